"""concepts: on a planted ViT whose red feature fires on one class and whose green feature fires
on classes far apart in WordNet, purity and spread land on opposite sides of the random
baseline; every number matches an independent computation from WordNet; a dataset without
WordNet ids is refused."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from vis_helpers import (
    GREEN,
    RED,
    MemoryDataset,
    artifacts,
    colour_images,
    context,
    metrics,
    planted_vit,
    solid,
)

from runner.data.base import Sample
from runner.data.wordnet import wordnet
from runner.errors import DatasetError
from runner.kinds.concepts import KIND
from runner.kinds.concepts.measures import ClassSpace, random_sets, set_measures
from runner.schema import ImagenetDataset, SyntheticDataset
from tests.helpers import RecordingSection

#: Eight classes: four carnivores close together, four far apart (an artifact, a marking, a
#: written mark, a plane figure).
CHIHUAHUA, SHEPHERD, BEAGLE, TABBY = "n02085620", "n02106662", "n02088364", "n02123045"
TEAPOT, CRISSCROSS, ARROW, HEXAGON = "n04398044", "n04681387", "n06818121", "n13882276"
CLASSES = [CHIHUAHUA, SHEPHERD, BEAGLE, TABBY, TEAPOT, CRISSCROSS, ARROW, HEXAGON]
PER_CLASS, K = 5, 5
#: Green images: one of each of five classes far apart in WordNet.
GREEN_CLASSES = [TABBY, TEAPOT, CRISSCROSS, ARROW, HEXAGON]


class LabelledDataset(MemoryDataset):
    """In-memory images with WordNet class ids as classes."""

    def __init__(self, images, labels, classes) -> None:
        super().__init__(images)
        self.classes = list(classes)
        self.samples = [Sample(Path(f"{i}.png"), label) for i, label in enumerate(labels)]


def planted_dataset() -> LabelledDataset:
    """Every Chihuahua image is red; one image of each GREEN_CLASSES class is green; the rest
    are muted colours (neither feature fires much on them)."""
    muted = iter(colour_images(len(CLASSES) * PER_CLASS, seed=3))
    images, labels = [], []
    for label, wnid in enumerate(CLASSES):
        for i in range(PER_CLASS):
            if wnid == CHIHUAHUA:
                image = solid([0.9, 0.1, 0.1], noise=0.05, seed=i)
            elif wnid in GREEN_CLASSES and i == 0:
                image = solid([0.1, 0.9, 0.1], noise=0.05, seed=10 + label)
            else:
                image = next(muted)
            images.append(image)
            labels.append(label)
    return LabelledDataset(images, labels, CLASSES)


def run_concepts(tmp_path: Path, dataset=None, seed: int = 0, **params):
    params = KIND.Params(**{"layers": [0], "features": [RED, GREEN], "k": K, "draws": 400,
                            **params})
    ctx = context(tmp_path, "concepts", params, planted_vit(), dataset or planted_dataset(),
                  seed=seed)
    KIND.run(ctx)
    return ctx


def value(ctx, name: str, **dims) -> float:
    dims = {"variant": None, "layer": 0, **dims}
    (row,) = metrics(ctx, name, **dims)
    return row.value


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    return run_concepts(tmp_path_factory.mktemp("concepts"))


def test_planted_features_fall_on_opposite_sides_of_the_random_baseline(ran) -> None:
    random = {name: value(ran, name, variant="random") for name in ("purity", "spread")}
    # one class: pure, no spread
    assert value(ran, "purity", feature=RED) == 1.0 > random["purity"]
    assert value(ran, "spread", feature=RED) == 0.0 < random["spread"]
    assert value(ran, "distinct", feature=RED) == 1
    # five classes far apart: purity at its floor (1/k), spread far above random sets'
    assert value(ran, "purity", feature=GREEN) == pytest.approx(1 / K)
    assert value(ran, "purity", feature=GREEN) < random["purity"]
    assert value(ran, "spread", feature=GREEN) > random["spread"] + 2
    assert value(ran, "distinct", feature=GREEN) == K
    assert value(ran, "spread_ratio", feature=GREEN) > 1 > value(ran, "spread_ratio", feature=RED)
    assert value(ran, "purity_ratio", feature=RED) > 1 > value(ran, "purity_ratio", feature=GREEN)


def test_numbers_match_an_independent_computation(ran) -> None:
    net = wordnet()
    pairs = list(itertools.combinations(GREEN_CLASSES, 2))
    spread = sum(net.distance(a, b) for a, b in pairs) / len(pairs)
    assert value(ran, "spread", feature=GREEN) == pytest.approx(spread)
    assert value(ran, "label_depth", feature=RED) == net.depth(CHIHUAHUA) == 15
    green_label = net.cover(GREEN_CLASSES)  # needs 3 of 5: tabby, teapot, crisscross: objects
    assert value(ran, "label_depth", feature=GREEN) == green_label.synset.depth
    for name in ("purity", "distinct", "spread"):
        ratio = value(ran, f"{name}_ratio", feature=GREEN)
        assert ratio == pytest.approx(value(ran, name, feature=GREEN)
                                      / value(ran, name, variant="random"))
    # the baseline: 400 sets of 5 of the 40 images, from the task's seed
    labels = np.repeat(np.arange(len(CLASSES)), PER_CLASS)
    space = ClassSpace.of("memory", CLASSES)
    expected = set_measures(random_sets(labels, K, 400, 0), space)
    for name in ("purity", "distinct", "spread", "label_depth"):
        assert value(ran, name, variant="random") == pytest.approx(expected[name].mean())
        assert value(ran, f"{name}_sd", variant="random") == pytest.approx(expected[name].std())


def test_labels_go_in_the_layer_artifact(ran) -> None:
    (row,) = artifacts(ran, "concepts")
    assert row.layer == 0
    record = json.loads((ran.sink.root / row.path).read_bytes())
    assert record["features"] == [RED, GREEN] and record["k"] == K
    assert record["wnids"] == CLASSES and record["classes"] == CLASSES
    red, green = 0, 1
    assert record["label"][red] == CHIHUAHUA and record["label_name"][red] == "Chihuahua"
    assert record["label_share"][red] == 1.0 and record["label_depth"][red] == 15
    assert record["top_classes"][red] == [0] * K
    assert sorted(record["top_classes"][green]) == sorted(CLASSES.index(c) for c in GREEN_CLASSES)
    assert record["label_share"][green] >= 0.5
    assert record["label"][green] == wordnet().cover(GREEN_CLASSES).synset.wnid
    assert record["baseline"]["purity"]["mean"] == value(ran, "purity", variant="random")


def test_baseline_follows_the_seed(tmp_path: Path, ran) -> None:
    again = run_concepts(tmp_path / "a", seed=0)
    other = run_concepts(tmp_path / "b", seed=1)
    same = value(again, "spread", variant="random")
    assert same == value(ran, "spread", variant="random")
    assert value(other, "spread", variant="random") != same
    assert value(other, "spread", feature=GREEN) == value(ran, "spread", feature=GREEN)


def test_a_dataset_without_wordnet_ids_is_refused(tmp_path: Path) -> None:
    plain = MemoryDataset(colour_images(6))  # classes 'a', 'b'
    with pytest.raises(DatasetError, match="'a', 'b'"):
        run_concepts(tmp_path, dataset=plain)
    # at plan time: the synthetic world has ids, a folder of named classes has none
    KIND.check_dataset(KIND.Params(), "shapes", SyntheticDataset(kind="synthetic"))
    for name in ("cats", "dogs"):
        (tmp_path / "pets" / name).mkdir(parents=True)
        (tmp_path / "pets" / name / "a.png").write_bytes(b"")
    with pytest.raises(DatasetError, match="not WordNet 3.0 noun ids"):
        KIND.check_dataset(KIND.Params(), "pets",
                           ImagenetDataset(kind="imagenet", root=str(tmp_path / "pets")))


def test_params() -> None:
    assert KIND.Params().k == 10 and KIND.Params().draws == 1000
    for bad in ({"k": 1}, {"draws": 0}, {"score": "median"}, {"labels": True}):
        with pytest.raises(ValidationError):
            KIND.Params(**bad)


def test_measures_on_hand_made_sets() -> None:
    space = ClassSpace.of("hand", [CHIHUAHUA, SHEPHERD, TEAPOT])
    sets = np.array([[0, 0, 0, 1], [0, 1, 2, 2], [2, 2, 2, 2]])
    out = set_measures(sets, space)
    np.testing.assert_allclose(out["purity"], [0.75, 0.5, 1.0])
    np.testing.assert_array_equal(out["distinct"], [2, 3, 1])
    d = space.distances  # Chihuahua-shepherd 5, Chihuahua-teapot 13, shepherd-teapot 14
    assert (d[0, 1], d[0, 2], d[1, 2]) == (5, 13, 14)
    np.testing.assert_allclose(out["spread"], [(3 * 5) / 6, (5 + 13 + 13 + 14 + 14) / 6, 0])
    np.testing.assert_array_equal(out["label_depth"][[0, 2]], [15, wordnet().depth(TEAPOT)])
    draws = random_sets(np.array([0, 0, 1, 2]), 3, 50, seed=7)
    assert draws.shape == (50, 3) and (draws == random_sets(np.array([0, 0, 1, 2]), 3, 50, 7)).all()
    assert all(sorted(row).count(0) <= 2 for row in draws.tolist())  # images drawn once


def test_the_synthetic_world_has_wordnet_classes(tmp_path: Path, monkeypatch) -> None:
    """The shapes map to their nouns at run time too: labels are synsets of plane figures."""
    from eval_helpers import synthetic_val, tiny_vit

    monkeypatch.setenv("VITSTUDY_CACHE", str(tmp_path / "cache"))
    dataset = synthetic_val()  # circle, square, triangle, star: 6 images each
    params = KIND.Params(layers=[-1], features={"start": 0, "stop": 8}, k=4, draws=50)
    ctx = context(tmp_path, "concepts", params, tiny_vit(), dataset)
    KIND.run(ctx)
    (row,) = artifacts(ctx, "concepts")
    record = json.loads((ctx.sink.root / row.path).read_bytes())
    assert record["classes"] == ["circle", "square", "triangle", "star"]
    assert [wordnet().synset(w).lemma for w in record["wnids"]] == record["classes"]
    assert len(record["label"]) == 8 and record["layer"] == 2
    shapes = wordnet().ancestors("n13863186")  # plane figure and its hypernyms
    assert all(label in shapes or "n13863186" in wordnet().ancestors(label)
               for label in record["label"])
    assert len(metrics(ctx, "spread", variant=None, layer=2)) == 8


# --------------------------------------------------------------------------- report section


def _study(tmp_path: Path, models: dict[str, tuple[str, float, float]]):
    """A StudyData of one concepts task per model: alias -> (library name, mean purity ratio,
    mean spread ratio) over 40 features in 2 layers, with a labels artifact per layer."""
    from runner.results.study import StudyData, task_labels

    rng = np.random.default_rng(0)
    tasks, rows, files = [], [], []
    for i, (alias, (_, purity, spread)) in enumerate(models.items()):
        key = f"key{i}"
        tasks.append({"key": key, "kind": "concepts", "model": alias, "dataset": "val",
                      "status": "done", "seed": 0, "info": "{}",
                      "params": json.dumps({"k": K, "layers": "all", "features": "all"})})
        for layer in (0, 1):
            for name, mean in (("purity", 0.3), ("spread", 10.0)):
                rows.append((key, name, mean, "random", layer, None))
            for feature in range(20):
                p, s = (max(0.0, m + rng.normal(0, 0.05)) for m in (purity, spread))
                for name, v in (("purity_ratio", p), ("spread_ratio", s), ("purity", 0.3 * p),
                                ("spread", 10 * s), ("distinct", 3.0), ("label_depth", 6.0)):
                    rows.append((key, name, v, None, layer, feature))
            path = tmp_path / f"{key}_{layer}.json"
            path.write_text(json.dumps({
                "layer": layer, "features": [0, 1], "classes": ["circle", "arrow", "star"],
                "top_classes": [[0, 0, 0, 0, 0], [0, 1, 2, 0, 1]],
                "label_name": ["circle", "entity"], "label_depth": [8, 0],
                "label_share": [1.0, 1.0]}))
            files.append({"task_key": key, "role": "concepts", "file": str(path),
                          "layer": layer})
    frame = pd.DataFrame(tasks)
    metrics = pd.DataFrame(rows, columns=["task_key", "name", "value", "variant", "layer",
                                          "feature"])
    data = StudyData("s", frame, metrics, pd.DataFrame(files), tmp_path,
                     model_names={a: lib for a, (lib, _, _) in models.items()})
    data.labels = task_labels(frame)
    return data


def test_report_section_verdicts_from_intervals(tmp_path: Path) -> None:
    from runner.kinds.concepts.report import SECTION

    data = _study(tmp_path, {
        "clip_b32": ("open_clip/ViT-B-32-quickgelu.openai", 0.9, 1.3),
        "vit_b16": ("vit_base_patch16_384.orig_in21k_ft_in1k", 2.0, 0.5),
        "resnet50": ("resnet50.tv_in1k", 1.8, 0.6),
    })
    section = RecordingSection("concepts", data)
    SECTION.build(section)
    assert section.notes[0].startswith("Paper (section 6)")
    single, clip = section.notes[1], section.notes[2]
    assert "holds on vit_b16, resnet50" in single and "clip_b32" not in single
    assert clip.startswith("CLIP ViTs' features span concepts") and "holds on clip_b32" in clip
    assert section.figures == ["concepts_by_layer"]
    summary, examples = section.tables
    cells = summary.cells
    assert list(dict.fromkeys(cells["group"])) == ["CLIP ViT", "supervised ViT", "CNN"]
    spread = cells[(cells["row"] == "clip_b32") & (cells["column"] == "spread / random")]
    assert spread["value"].iloc[0] == pytest.approx(1.3, abs=0.03)
    assert spread["ci_low"].iloc[0] < 1.3 < spread["ci_high"].iloc[0]
    rows = list(dict.fromkeys(examples.cells["row"]))
    assert any("purest: layer 1 feature 0: “circle”" in r for r in rows)
    assert any("across classes: layer 1 feature 1: “entity” (top images: circle, arrow, star)" in r
               for r in rows)


def test_report_verdicts_that_do_not_hold(tmp_path: Path) -> None:
    from runner.kinds.concepts.report import SECTION

    data = _study(tmp_path, {
        "clip_b16": ("open_clip/ViT-B-16.openai", 2.0, 0.5),    # as pure as the ViT
        "deit_s": ("deit_small_patch16_224.fb_in1k", 1.0, 1.0),  # random-like
    })
    section = RecordingSection("concepts", data)
    SECTION.build(section)
    assert "undecided on deit_s" in section.notes[1]
    assert "does not hold on clip_b16" in section.notes[2]
    only_clip = RecordingSection(
        "concepts", _study(tmp_path, {"clip": ("open_clip/RN50.openai", 1, 1)}))
    SECTION.build(only_clip)  # a CLIP ResNet is a CNN: no CLIP ViT, no supervised ViT
    assert not any("CLIP ViTs'" in n for n in only_clip.notes)


def test_plan_refuses_concepts_on_a_dataset_without_wordnet_ids(tmp_path: Path) -> None:
    """`vitstudy plan` refuses before anything runs: one paragraph at the entry's dataset,
    exit 2; the same entry on the synthetic world (shape classes have WordNet ids) plans."""
    from click.testing import CliRunner
    from PIL import Image

    from runner.cli import main
    from tests.helpers import TINY_VIT, write_study

    for name in ("cats", "dogs"):
        folder = tmp_path / "pets" / name
        folder.mkdir(parents=True)
        Image.new("RGB", (16, 16), (200, 10, 10)).save(folder / "a.png")
    study = ("name: pets\ndatasets:\n  pets: {kind: imagenet, root: " + str(tmp_path / "pets")
             + "}\n  shapes: {kind: synthetic, split: val, classes: 4, val_per_class: 2, "
             "size: 32}\n" + TINY_VIT + "studies:\n  - kind: concepts\n    models: [vit]\n"
             "    dataset: DATA\n    params: {layers: [0], k: 2}\n")
    runner = CliRunner()
    db = f"sqlite:///{tmp_path / 'r.db'}"
    refused = runner.invoke(main, ["--db", db, "plan",
                                   str(write_study(tmp_path, study.replace("DATA", "pets")))])
    assert refused.exit_code == 2, refused.output
    assert "not WordNet 3.0 noun ids" in refused.output and "dataset" in refused.output
    assert "Traceback" not in refused.output
    planned = runner.invoke(main, ["--db", db, "plan", str(write_study(
        tmp_path, study.replace("DATA", "shapes"), "ok.yaml"))])
    assert planned.exit_code == 0, planned.output
