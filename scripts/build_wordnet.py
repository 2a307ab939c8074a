"""Build runner/data/wordnet/nouns.txt.gz, WordNet 3.0's noun hierarchy as package data.

Reads ``data.noun`` of WordNet 3.0 as Debian's ``wordnet-base`` package ships it::

    cd /tmp && apt-get download wordnet-base && dpkg -x wordnet-base_*.deb wordnet-base
    python scripts/build_wordnet.py /tmp/wordnet-base/usr/share/wordnet/data.noun

and writes three lines, one column each, with one space-separated entry per noun synset in
the file's (offset) order::

    <offset> <offset> ...
    <first lemma> <first lemma> ...
    <hypernym rows, comma-separated, or -> ...

The hypernyms are the synset's ``@`` (hypernym) and ``@i`` (instance hypernym) pointers,
given as 0-based rows (positions in the columns), so the loader needs no offset lookup, and
a column is one ``str.split`` (loading takes about 0.1 s). Only the
hierarchy is kept (no glosses, no other relations): about 0.8 MB gzipped instead of 15 MB.
The gzip has no timestamp, so the same input always gives the same bytes. WordNet's licence
(the header of ``data.noun``) goes beside it as ``LICENSE``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "runner" / "data" / "wordnet"
HYPERNYM_POINTERS = ("@", "@i")


def parse_data_noun(text: str) -> tuple[list[tuple[str, str, list[str]]], list[str]]:
    """The synsets of a ``data.noun`` file as (offset, first lemma, hypernym offsets), and its
    licence header (the lines that start with two spaces), without their line numbers."""
    synsets, licence = [], []
    for line in text.splitlines():
        if line.startswith("  "):
            licence.append(line.split(" ", 3)[3].rstrip() if line.count(" ") >= 3 else "")
            continue
        fields = line.split(" | ")[0].split()
        offset, n_words = fields[0], int(fields[3], 16)
        words = fields[4:4 + 2 * n_words:2]
        at = 4 + 2 * n_words
        n_pointers = int(fields[at])
        pointers = [fields[at + 1 + 4 * i: at + 5 + 4 * i] for i in range(n_pointers)]
        hypernyms = [p[1] for p in pointers if p[0] in HYPERNYM_POINTERS and p[2] == "n"]
        synsets.append((offset, words[0], hypernyms))
    return synsets, licence


def encode(synsets: list[tuple[str, str, list[str]]]) -> bytes:
    """The compact text: the offset, first lemma and hypernym rows columns."""
    row_of = {offset: i for i, (offset, _, _) in enumerate(synsets)}
    columns = ([offset for offset, _, _ in synsets], [lemma for _, lemma, _ in synsets],
               [",".join(str(row_of[h]) for h in hyps) or "-" for _, _, hyps in synsets])
    text = "".join(" ".join(column) + "\n" for column in columns)
    return gzip.compress(text.encode(), compresslevel=9, mtime=0)


def main(argv: list[str] | None = None) -> None:
    """Command line: data.noun in, package data out."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_noun", type=Path, help="WordNet 3.0's data.noun")
    parser.add_argument("--out", type=Path, default=OUT, help="folder to write into")
    args = parser.parse_args(argv)
    synsets, licence = parse_data_noun(args.data_noun.read_text(encoding="latin-1"))
    data = encode(synsets)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "nouns.txt.gz").write_bytes(data)
    header = ("WordNet 3.0 noun hierarchy (offsets, first lemmas, hypernym pointers), derived "
              "from data.noun of WordNet 3.0 by scripts/build_wordnet.py. WordNet's licence "
              "follows.\n\n")
    (args.out / "LICENSE").write_text(header + "\n".join(licence).strip() + "\n")
    print(f"{len(synsets)} synsets, {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}")


if __name__ == "__main__":
    main()
