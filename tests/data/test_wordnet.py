"""WordNet 3.0's noun hierarchy as shipped: known ImageNet classes, NLTK's documented numbers
(dog: max_depth 13, min_depth 8, two hypernym paths, path_similarity to cat 0.2), the label
rule, the dataset mapping, and the package data (size, licence, load time, build script)."""

from __future__ import annotations

import fnmatch
import gzip
import importlib.util
import time
from pathlib import Path

import numpy as np
import pytest
import tomllib

from runner.data.synthetic_render import SHAPE_WNIDS, SHAPES
from runner.data.wordnet import (
    DATA,
    ROOT,
    WordNet,
    class_wnids,
    dataset_wnids,
    is_wnid,
    wordnet,
)
from runner.errors import DatasetError
from runner.schema import ImagenetDataset, SyntheticDataset

REPO = Path(__file__).resolve().parents[2]
CHIHUAHUA, GERMAN_SHEPHERD, BEAGLE, GOLDEN = "n02085620", "n02106662", "n02088364", "n02099601"
TABBY, TEAPOT = "n02123045", "n04398044"
DOG, CAT, TOY_DOG, HUNTING_DOG = "n02084071", "n02121620", "n02085374", "n02087122"


@pytest.fixture(scope="module")
def wn() -> WordNet:
    return wordnet()


def test_synsets_and_hypernyms_of_imagenet_classes(wn: WordNet) -> None:
    assert wn.synset(CHIHUAHUA).lemma == "Chihuahua"
    assert wn.synset(GOLDEN).name == "golden retriever"
    assert wn.synset(TEAPOT).lemma == "teapot"
    assert wn.hypernyms(CHIHUAHUA) == [TOY_DOG]
    assert DOG in wn.ancestors(CHIHUAHUA) and DOG in wn.ancestors(BEAGLE)
    assert DOG not in wn.ancestors(TABBY) and DOG not in wn.ancestors(TEAPOT)
    paths = wn.hypernym_paths(CHIHUAHUA)
    assert all(p[0] == ROOT and p[-1] == CHIHUAHUA for p in paths)
    assert [wn.synset(w).lemma for w in paths[0][-3:]] == ["dog", "toy_dog", "Chihuahua"]


def test_depths_and_distances_match_nltk(wn: WordNet) -> None:
    """NLTK's documented values for dog.n.01 and cat.n.01."""
    assert wn.depth(DOG) == 13 and wn.synset(DOG).depth == 13
    assert wn.min_depth(DOG) == 8
    assert len(wn.hypernym_paths(DOG)) == 2
    assert wn.distance(DOG, CAT) == 4  # path_similarity 1 / (4 + 1) = 0.2
    assert wn.depth(ROOT) == 0 and wn.distance(DOG, DOG) == 0
    assert wn.depth(CHIHUAHUA) == wn.depth(DOG) + 2  # Chihuahua < toy dog < dog
    assert wn.distance(CHIHUAHUA, DOG) == 2 and wn.distance(DOG, CHIHUAHUA) == 2


def test_two_dog_breeds_are_closer_than_a_dog_breed_and_a_teapot(wn: WordNet) -> None:
    breeds = wn.distance(CHIHUAHUA, GERMAN_SHEPHERD)
    assert breeds == 5  # Chihuahua > toy dog > dog < working dog < shepherd dog < shepherd
    assert wn.distance(CHIHUAHUA, TABBY) == 5  # dog and cat meet at carnivore
    assert wn.distance(CHIHUAHUA, TEAPOT) == 13
    assert breeds < wn.distance(CHIHUAHUA, TEAPOT)
    assert wn.distance(BEAGLE, GOLDEN) == 5  # hound < hunting dog > sporting dog > ...


def test_distance_matrix_is_the_pairwise_distance(wn: WordNet) -> None:
    ids = [CHIHUAHUA, GERMAN_SHEPHERD, BEAGLE, GOLDEN, TABBY, TEAPOT, DOG]
    matrix = wn.distances(ids)
    expected = np.array([[wn.distance(a, b) for b in ids] for a in ids])
    np.testing.assert_array_equal(matrix, expected)
    assert (matrix == matrix.T).all() and (np.diag(matrix) == 0).all()


def test_label_is_the_deepest_synset_covering_half(wn: WordNet) -> None:
    three_dogs_one_cat = wn.cover([CHIHUAHUA, GERMAN_SHEPHERD, BEAGLE, TABBY])
    assert three_dogs_one_cat.synset.wnid == DOG
    assert (three_dogs_one_cat.count, three_dogs_one_cat.total) == (3, 4)
    assert three_dogs_one_cat.synset.depth == 13
    # two of four are hunting dogs (beagle, golden retriever): half is enough, and deeper
    hunting = wn.cover([CHIHUAHUA, BEAGLE, GOLDEN, TABBY])
    assert hunting.synset.wnid == HUNTING_DOG and hunting.share == 0.5
    # one dog and three teapots: the teapot itself; a class repeated counts per image
    assert wn.cover([TEAPOT, TEAPOT, TEAPOT, CHIHUAHUA]).synset.wnid == TEAPOT
    assert wn.cover([CHIHUAHUA]).synset.wnid == CHIHUAHUA
    # a dog, a cat and a teapot: two of three are carnivores; a tie of halves goes deeper
    assert wn.cover([CHIHUAHUA, TABBY, TEAPOT]).synset.lemma == "carnivore"
    assert wn.cover([TEAPOT, CHIHUAHUA]).synset.wnid == CHIHUAHUA  # depth 15 beats 11
    with pytest.raises(ValueError):
        wn.cover([])


def test_unknown_ids(wn: WordNet) -> None:
    assert is_wnid(CHIHUAHUA) and not is_wnid("n0208562") and not is_wnid("circle")
    assert CHIHUAHUA in wn and "n99999999" not in wn and "dog" not in wn
    with pytest.raises(KeyError, match="not a WordNet 3.0 noun id"):
        wn.synset("n99999999")


def test_dataset_classes_map_to_wordnet(tmp_path: Path) -> None:
    assert class_wnids("val", [TEAPOT, CHIHUAHUA]) == [TEAPOT, CHIHUAHUA]
    world = dataset_wnids("shapes", SyntheticDataset(kind="synthetic", classes=4))
    assert world == [SHAPE_WNIDS[s] for s in SHAPES[:4]]
    assert [wordnet().synset(w).lemma for w in world] == ["circle", "square", "triangle", "star"]
    assert set(SHAPE_WNIDS) == set(SHAPES) and all(w in wordnet() for w in SHAPE_WNIDS.values())
    for wnid in (DOG, CAT):  # not ImageNet-1k classes: the folder's own (sorted) order
        (tmp_path / "root" / wnid).mkdir(parents=True)
        (tmp_path / "root" / wnid / "a.JPEG").write_bytes(b"")
    spec = ImagenetDataset(kind="imagenet", root=str(tmp_path / "root"))
    assert dataset_wnids("val", spec) == [DOG, CAT]


def test_classes_without_wordnet_ids_are_refused_in_one_paragraph(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as e:
        class_wnids("pets", ["cat", DOG, "n99999999", "goldfish"])
    message = str(e.value)
    assert "'pets'" in message and "3 of its 4 classes" in message and "'goldfish'" in message
    assert "\n" not in message
    for name in ("cats", "dogs"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "a.JPEG").write_bytes(b"")
    with pytest.raises(DatasetError, match="'cats', 'dogs'"):
        dataset_wnids("pets", ImagenetDataset(kind="imagenet", root=str(tmp_path)))


def test_package_data_is_small_licensed_installed_and_fast() -> None:
    assert DATA.stat().st_size < 2_000_000
    licence = (DATA.parent / "LICENSE").read_text()
    assert "WordNet 3.0 Copyright 2006 by Princeton University" in licence
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["runner.data"]
    for name in ("nouns.txt.gz", "LICENSE"):
        assert any(fnmatch.fnmatch(f"wordnet/{name}", p) for p in package_data), name
    best = min(_load_seconds() for _ in range(3))
    assert best < 0.5, f"loading the hierarchy took {best:.2f} s"
    assert len(wordnet()) == 82115  # every noun synset of WordNet 3.0


def _load_seconds() -> float:
    start = time.perf_counter()
    WordNet.load()
    return time.perf_counter() - start


DATA_NOUN = """\
  1 This software and database is being provided to you, the LICENSEE, by  
  2 WordNet 3.0 Copyright 2006 by Princeton University.  All rights reserved.  
00001740 03 n 01 entity 0 001 ~ 00000002 n 0000 | that which is perceived  
00000002 03 n 02 thing 0 object 0 002 @ 00001740 n 0000 ~ 00000003 n 0000 | a thing  
00000003 03 n 01 Rex 0 003 @i 00000002 n 0000 @ 00001740 n 0000 + 01234567 v 0101 | a dog  
"""  # noqa: W291 - data.noun's licence lines end in two spaces


def test_build_script_round_trip(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("build_wordnet",
                                                  REPO / "scripts" / "build_wordnet.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    (tmp_path / "data.noun").write_text(DATA_NOUN)
    build.main([str(tmp_path / "data.noun"), "--out", str(tmp_path / "out")])
    first = (tmp_path / "out" / "nouns.txt.gz").read_bytes()
    build.main([str(tmp_path / "data.noun"), "--out", str(tmp_path / "out")])
    assert (tmp_path / "out" / "nouns.txt.gz").read_bytes() == first  # reproducible
    columns = gzip.decompress(first).decode().splitlines()
    assert columns == ["00001740 00000002 00000003", "entity thing Rex", "- 0 1,0"]
    net = WordNet.load(tmp_path / "out" / "nouns.txt.gz")
    assert net.hypernyms("n00000003") == ["n00000002", ROOT]  # @i and @ kept, verb pointer not
    assert net.depth("n00000003") == 2 and net.min_depth("n00000003") == 1
    licence = (tmp_path / "out" / "LICENSE").read_text()
    assert "Copyright 2006 by Princeton University" in licence and "  2 " not in licence
