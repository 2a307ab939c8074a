"""WordNet 3.0's noun hierarchy, shipped as package data (``runner/data/wordnet/``, built from
Debian's ``wordnet-base`` by ``scripts/build_wordnet.py``; licence beside it). Nothing is
downloaded: ``wordnet()`` reads the file once per process.

A synset is named by its wnid, ``n`` + its 8-digit offset in ``data.noun`` (ImageNet's class
folder names: ``n02085620`` is Chihuahua). Edges are the hypernym (``@``) and instance
hypernym (``@i``) pointers, as NLTK's ``hypernyms() + instance_hypernyms()``; every noun
reaches the root ``n00001740`` (entity). Distances and depths follow NLTK's definitions
(``shortest_path_distance``, ``max_depth``, ``min_depth``), so numbers can be checked there.
"""

from __future__ import annotations

import gzip
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from runner.errors import DatasetError
from runner.schema import ImagenetDataset, SyntheticDataset

DATA = Path(__file__).with_name("wordnet") / "nouns.txt.gz"
ROOT = "n00001740"
_WNID = re.compile(r"n\d{8}")


def is_wnid(name: str) -> bool:
    """Whether ``name`` is spelled as a WordNet noun id (``n`` + 8 digits)."""
    return _WNID.fullmatch(name) is not None


@dataclass(frozen=True)
class Synset:
    """One noun synset: its wnid, first lemma (WordNet's spelling, ``_`` for spaces) and depth
    (the longest hypernym path to the root, NLTK's ``max_depth``: entity is 0)."""

    wnid: str
    lemma: str
    depth: int

    @property
    def name(self) -> str:
        """The lemma as words (``golden retriever``)."""
        return self.lemma.replace("_", " ")


@dataclass(frozen=True)
class Cover:
    """The label of a set of synsets: the deepest synset that is, or is a hypernym of, at
    least half of them (``count`` of ``total``)."""

    synset: Synset
    count: int
    total: int

    @property
    def share(self) -> float:
        return self.count / self.total


class WordNet:
    """The noun hierarchy: synsets by wnid, their hypernyms, depths and path distances."""

    def __init__(self, offsets: Sequence[str], lemmas: Sequence[str],
                 parents: Sequence[str]) -> None:
        """``parents`` per row: the parent rows as written in the data (``3,17``; ``-``: none),
        parsed on first use so that loading stays fast."""
        self.offsets, self.lemmas, self._parent_text = offsets, lemmas, parents
        self._index = {offset: i for i, offset in enumerate(offsets)}
        self._parents: dict[int, tuple[int, ...]] = {}
        self._max_depth: dict[int, int] = {}
        self._ups: dict[int, dict[int, int]] = {}

    @classmethod
    def load(cls, path: Path = DATA) -> WordNet:
        """Read the package data: three lines (offsets, first lemmas, parent rows such as
        ``3,17`` or ``-`` for the root), one space-separated entry per synset."""
        offsets, lemmas, parents = (line.split(" ") for line in
                                    gzip.decompress(path.read_bytes()).decode().splitlines())
        return cls(offsets, lemmas, parents)

    def parents(self, i: int) -> tuple[int, ...]:
        """The rows of row ``i``'s direct hypernyms."""
        if i not in self._parents:
            text = self._parent_text[i]
            self._parents[i] = () if text == "-" else tuple(map(int, text.split(",")))
        return self._parents[i]

    def __len__(self) -> int:
        return len(self.offsets)

    def __contains__(self, wnid: object) -> bool:
        return isinstance(wnid, str) and is_wnid(wnid) and wnid[1:] in self._index

    def index(self, wnid: str) -> int:
        """The synset's row; ``KeyError`` for a wnid that is not a WordNet 3.0 noun."""
        if wnid not in self:
            raise KeyError(f"{wnid!r} is not a WordNet 3.0 noun id (n + an 8-digit offset "
                           "of data.noun, e.g. n02085620)")
        return self._index[wnid[1:]]

    def wnid(self, index: int) -> str:
        return "n" + self.offsets[index]

    def synset(self, wnid: str) -> Synset:
        return self._synset(self.index(wnid))

    def _synset(self, i: int) -> Synset:
        return Synset(self.wnid(i), self.lemmas[i], self._depth(i))

    def hypernyms(self, wnid: str) -> list[str]:
        """The direct hypernyms (instance hypernyms included)."""
        return [self.wnid(p) for p in self.parents(self.index(wnid))]

    def hypernym_paths(self, wnid: str) -> list[list[str]]:
        """Every path from the root down to the synset (NLTK's ``hypernym_paths``)."""
        return [[self.wnid(i) for i in path] for path in self._paths(self.index(wnid))]

    def _paths(self, i: int) -> list[list[int]]:
        if not self.parents(i):
            return [[i]]
        return [path + [i] for p in self.parents(i) for path in self._paths(p)]

    def depth(self, wnid: str) -> int:
        """The longest hypernym path's length to the root (NLTK's ``max_depth``)."""
        return self._depth(self.index(wnid))

    def min_depth(self, wnid: str) -> int:
        """The shortest hypernym path's length to the root (NLTK's ``min_depth``)."""
        return self._up(self.index(wnid))[self._index[ROOT[1:]]]

    def _depth(self, i: int) -> int:
        if i not in self._max_depth:
            ups = self.parents(i)
            self._max_depth[i] = 1 + max(self._depth(p) for p in ups) if ups else 0
        return self._max_depth[i]

    def _up(self, i: int) -> dict[int, int]:
        """Every hypernym of row ``i`` (itself included) with its fewest steps up from it: a
        breadth-first walk (NLTK's ``_shortest_hypernym_paths``), kept per row."""
        if i not in self._ups:
            out, frontier, steps = {i: 0}, [i], 0
            while frontier:
                steps += 1
                frontier = list(dict.fromkeys(
                    p for s in frontier for p in self.parents(s) if p not in out))
                out.update(dict.fromkeys(frontier, steps))
            self._ups[i] = out
        return self._ups[i]

    def ancestors(self, wnid: str) -> set[str]:
        """The synset and all its hypernyms, up to the root."""
        return {self.wnid(a) for a in self._up(self.index(wnid))}

    def distance(self, a: str, b: str) -> int:
        """Fewest hypernym/hyponym edges between two synsets through a common hypernym (NLTK's
        ``shortest_path_distance``): 0 for a synset and itself."""
        up_a, up_b = self._up(self.index(a)), self._up(self.index(b))
        return min(d + up_b[s] for s, d in up_a.items() if s in up_b)

    def distances(self, wnids: Sequence[str]) -> np.ndarray:
        """(n, n) int matrix of ``distance`` between every pair of ``wnids``: one pass over
        their shared hypernyms instead of n^2 lookups (1000 ImageNet classes in a second)."""
        below: dict[int, list[tuple[int, int]]] = {}
        for row, wnid in enumerate(wnids):
            for synset, steps in self._up(self.index(wnid)).items():
                below.setdefault(synset, []).append((row, steps))
        out = np.full((len(wnids), len(wnids)), np.iinfo(np.int32).max, dtype=np.int64)
        for pairs in below.values():
            rows, steps = np.array(pairs).T
            block = np.ix_(rows, rows)
            out[block] = np.minimum(out[block], steps[:, None] + steps[None, :])
        return out

    def cover(self, wnids: Iterable[str]) -> Cover:
        """The label of a multiset of synsets: the deepest synset (``depth``) that is or is a
        hypernym of at least half of them; ties go to the one covering more, then to the
        lower offset. ``ValueError`` when ``wnids`` is empty."""
        counts = Counter(self.index(w) for w in wnids)
        total = sum(counts.values())
        if total == 0:
            raise ValueError("cover() needs at least one synset")
        covered: Counter[int] = Counter()
        for i, n in counts.items():
            for synset in self._up(i):
                covered[synset] += n
        best = max((s for s, n in covered.items() if 2 * n >= total),
                   key=lambda s: (self._depth(s), covered[s], -s))
        return Cover(self._synset(best), covered[best], total)


@cache
def wordnet() -> WordNet:
    """The shipped noun hierarchy, read once per process (about 0.1 s)."""
    return WordNet.load()


def class_wnids(name: str, classes: Sequence[str]) -> list[str]:
    """The WordNet 3.0 noun id of each class of dataset ``name``, in label order: a class
    folder named by its wnid (ImageNet) is that synset, a shape of the synthetic world is its
    ``SHAPE_WNIDS`` entry. ``DatasetError`` naming the classes that have none."""
    from runner.data.synthetic_render import SHAPE_WNIDS

    net = wordnet()
    wnids = [c if c in net else SHAPE_WNIDS.get(c) for c in classes]
    missing = [c for c, w in zip(classes, wnids, strict=True) if w is None]
    if missing:
        shown = ", ".join(repr(c) for c in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise DatasetError(
            f"dataset {name!r}: {len(missing)} of its {len(classes)} classes ({shown}) are not "
            "WordNet 3.0 noun ids, so their images have no place in the noun hierarchy. "
            "Expected class folders (or a `classes` file) named by wnid, n + the 8-digit "
            "offset (ImageNet's n02085620), or the synthetic world; rename the classes to "
            "their wnids or use another dataset.")
    return [str(w) for w in wnids]


def dataset_wnids(name: str, spec: SyntheticDataset | ImagenetDataset) -> list[str]:
    """``class_wnids`` of a declared dataset without opening it (plan time): the synthetic
    world's shapes, or an ImageNet-layout folder's class list (a listing, as ``validate``
    already makes)."""
    if isinstance(spec, SyntheticDataset):
        from runner.data.synthetic_render import SHAPES

        return class_wnids(name, SHAPES[: spec.classes])
    from runner.data.folder import class_list, imagenet_paths

    return class_wnids(name, class_list(name, imagenet_paths(spec)))
