"""The quickstart's numbers in README.md and docs/, written from `make demo` databases.

Every number the docs state about the quickstart sits between marker comments, a block
(``<!-- demo-numbers:begin NAME -->`` ... ``<!-- demo-numbers:end NAME -->``) or one value
(``<!-- demo-numbers:KEY -->88.2<!-- /demo-numbers -->``); this script rewrites them from the
database(s), so rerunning it after a fresh `make demo` brings every doc up to date. Each
conclusion the README draws is a claim checked on every database given: one that does not
hold is reported, and the exit status is 1.

    python bench/demo_numbers.py --db results.db                   # rewrite the docs
    python bench/demo_numbers.py --db results.db --check           # exit 1 if a doc is stale
    python bench/demo_numbers.py --db r1.db --db r2.db --db r3.db --summary
                                    # per number: every run's value, mean and range; claims

With several databases the docs show a number once when every run gives it, else its mean
and range. Exit status: 0 up to date (or rewritten), 1 stale docs or a claim that does not
hold, 2 a database that is missing or lacks a quickstart number.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
WIDTH = 95  # the docs' source line width
#: The files whose markers this script owns.
DOCS = ("README.md", "docs/evaluation.md", "docs/datasets.md")
MODELS = ("vit", "cnn")
RADII = (1, 2, 4, 8, 16, 32)
LAYERS = range(6)


@dataclass(frozen=True)
class Figure:
    """One number of the quickstart: which metric row of the ``results`` view holds it."""

    key: str
    kind: str
    model: str
    name: str
    variant: str | None = None
    x: float | None = None
    layer: int | None = None
    digits: int = 1


def _figures() -> list[Figure]:
    """Every number the docs state about the quickstart."""
    out = []
    for m in MODELS:
        out += [Figure(f"{m}_val_top1", "train", m, "val_top1"),
                Figure(f"{m}_natural_top1", "lowpass", m, "top1", "natural")]
        for variant in ("full", "fg", "bg"):
            out += [Figure(f"{m}_{variant}_top1", "fgbg", m, "top1", variant),
                    Figure(f"{m}_{variant}_top5", "fgbg", m, "top5", variant)]
        out += [Figure(f"{m}_{v}_top5n", "fgbg", m, "top5_norm", v) for v in ("fg", "bg")]
        out += [Figure(f"{m}_lowpass_r{r}", "lowpass", m, "top1", "lowpass", x=r) for r in RADII]
        out += [Figure(f"{m}_highpass_r{r}", "lowpass", m, "top1", "highpass", x=r)
                for r in RADII]
    out += [Figure("vit_cls_natural", "cls_isolation", "vit", "top1", "natural"),
            Figure("vit_cls_isolated_l0", "cls_isolation", "vit", "top1", "isolated", x=0),
            Figure("vit_cls_isolated_l5", "cls_isolation", "vit", "top1", "isolated", x=5),
            Figure("vit_patch_average", "cls_isolation", "vit", "top1", "patch_average"),
            Figure("vit_patch_maximum", "cls_isolation", "vit", "top1", "patch_maximum")]
    out += [Figure(f"vit_drop_r2_l{layer}", "spatial_drop", "vit", "linearity_r2", "count",
                   layer=layer, digits=2) for layer in LAYERS]
    return out


FIGURES = {f.key: f for f in _figures()}
Values = dict[str, float]


class DemoError(Exception):
    """A database that cannot give the quickstart's numbers (exit status 2)."""


# ------------------------------------------------------------------------ reading a database


def database_url(db: str) -> str:
    """A SQLAlchemy URL for ``db``: a URL as is, a path as a SQLite file that must exist."""
    if "://" in db:
        return db
    if not Path(db).is_file():
        raise DemoError(f"no database at {db} (run `make demo` first)")
    return f"sqlite:///{Path(db).resolve()}"


def read_values(db: str, study: str = "quickstart") -> Values:
    """Every figure's value in one database, from its latest done task of each kind and model,
    plus ``run_seconds``: the wall time of its `vitstudy run` invocations."""
    from sqlalchemy.exc import SQLAlchemyError

    from runner import results
    from runner.errors import SchemaError

    url = database_url(db)
    try:
        tasks = results.tasks(url, study=study, status="done")
    except (SchemaError, SQLAlchemyError) as e:
        raise DemoError(f"{db}: {e}") from None
    if tasks.empty:
        raise DemoError(f"{db} has no done task of study {study!r}")
    latest = tasks.sort_values("ended_at").groupby(["kind", "model"]).tail(1)
    rows = results.results(url, study=study, task_keys=latest["key"].tolist())
    values = {key: _lookup(rows, figure, db) for key, figure in FIGURES.items()}
    runs = results.runs(url, study=study)  # only `vitstudy run` records runs
    values["run_seconds"] = float((runs["ended_at"] - runs["started_at"]).dt.total_seconds().sum())
    return values


def _lookup(rows: pd.DataFrame, f: Figure, db: str) -> float:
    """The one value of ``f`` in ``rows`` (a DemoError if there is none or several)."""
    match = (rows["kind"] == f.kind) & (rows["model"] == f.model) & (rows["name"] == f.name)
    for column, wanted in (("variant", f.variant), ("x", f.x), ("layer", f.layer)):
        match &= rows[column].isna() if wanted is None else rows[column] == wanted
    found = rows.loc[match, "value"]
    if len(found) != 1:
        where = f"{f.kind} / {f.model}: {f.name} variant={f.variant} x={f.x} layer={f.layer}"
        raise DemoError(f"{db}: {len(found)} rows for {where}; expected one (is it a database "
                        "of studies/quickstart.yaml?)")
    return float(found.iloc[0])


# --------------------------------------------------------------------------------- numbers


def number(runs: Sequence[Values], key: str, digits: int | None = None) -> str:
    """``key`` as the docs print it: one value when every run gives it, else
    ``mean (min-max)``."""
    digits = FIGURES[key].digits if digits is None else digits
    shown = [f"{run[key]:.{digits}f}" for run in runs]
    if len(set(shown)) == 1:
        return shown[0]
    values = [run[key] for run in runs]
    return (f"{statistics.mean(values):.{digits}f} "
            f"({min(values):.{digits}f}-{max(values):.{digits}f})")


def linear_layers(run: Values, threshold: float = 0.9) -> tuple[int, ...]:
    """The spatial-drop layers whose count curve is close to a line: R^2, as the docs show it
    (2 decimals), at least ``threshold``."""
    return tuple(i for i in LAYERS if round(run[f"vit_drop_r2_l{i}"], 2) >= threshold)


def layer_list(layers: Sequence[int]) -> str:
    """``0, 1 and 2``."""
    names = [str(i) for i in layers]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


# ---------------------------------------------------------------------------------- claims


@dataclass(frozen=True)
class Claim:
    """A conclusion the README draws, and the test each database must pass for it to stand."""

    name: str
    holds: Callable[[Values], bool]


CHANCE_TOP1, CHANCE_TOP5 = 10.0, 50.0

CLAIMS = (
    Claim("the ViT keeps more accuracy than the CNN under a strong low-pass (r = 2), by 10+ "
          "points", lambda v: v["vit_lowpass_r2"] >= v["cnn_lowpass_r2"] + 10),
    Claim("background-only top-1 is within 10 points of chance for both models",
          lambda v: max(v["vit_bg_top1"], v["cnn_bg_top1"]) < CHANCE_TOP1 + 10),
    Claim("the shape is the main cue: normalized top-5 foreground-only above background-only "
          "for both models", lambda v: all(v[f"{m}_fg_top5n"] > v[f"{m}_bg_top5n"]
                                           for m in MODELS)),
    Claim("CLS isolated at L = 0 is the natural accuracy",
          lambda v: v["vit_cls_isolated_l0"] == v["vit_cls_natural"]),
    Claim("the CNN's background-only top-5 is 5+ points above chance",
          lambda v: v["cnn_bg_top5"] >= CHANCE_TOP5 + 5),
    Claim("the ViT's background-only top-5 is below the CNN's",
          lambda v: v["vit_bg_top5"] < v["cnn_bg_top5"]),
    Claim("isolating the CLS token before the last block costs the ViT over half its accuracy",
          lambda v: v["vit_cls_isolated_l5"] < v["vit_cls_natural"] / 2),
    Claim("single patch tokens through the head: Patch Average and Maximum above 60%",
          lambda v: min(v["vit_patch_average"], v["vit_patch_maximum"]) > 60),
    Claim("spatial drop is linear (R^2 >= 0.9) in blocks 0-2",
          lambda v: set(linear_layers(v)) >= {0, 1, 2}),
    Claim("spatial drop bends (R^2 < 0.9) in at least one of blocks 3-5",
          lambda v: not set(linear_layers(v)) >= {3, 4, 5}),
)


def failed_claims(runs: Sequence[Values]) -> list[str]:
    """``claim: held in k of n runs`` for each claim that fails in some run."""
    out = []
    for claim in CLAIMS:
        held = sum(claim.holds(run) for run in runs)
        if held < len(runs):
            out.append(f"{claim.name}: held in {held} of {len(runs)} runs")
    return out


# ---------------------------------------------------------------------------------- blocks


def table_block(runs: Sequence[Values]) -> str:
    """README's quickstart table, with the sentence that says where it comes from."""
    def n(key: str) -> str:
        return number(runs, key)

    def row(label: str, vit: str, cnn: str) -> str:
        return f"| {label} | {vit} | {cnn} |"

    def both(label: str, keys: Sequence[str], sep: str = " / ") -> str:
        return row(label, sep.join(n(f"vit_{k}") for k in keys),
                   sep.join(n(f"cnn_{k}") for k in keys))

    source = ("one fresh `make demo` run" if len(runs) == 1 else
              f"{len(runs)} fresh `make demo` runs on one machine, "
              + ("identical in every number" if _identical(runs) else
                 "each number their mean (and range) when they differ"))
    lines = [
        wrap(f"Percentages on the 600 validation images, from {source} (timings: "
             "BENCHMARKS.md); `python bench/demo_numbers.py --db results.db` rewrites this "
             "table from yours:"),
        "",
        "| | ViT (6 blocks, 8-px patches) | CNN (timm `test_resnet`) |",
        "| --- | --- | --- |",
        both("val top-1 after training", ["val_top1"]),
        both("fgbg: foreground-only top-1 / normalized top-5", ["fg_top1", "fg_top5n"]),
        both("fgbg: background-only top-1 / normalized top-5", ["bg_top1", "bg_top5n"]),
        both("lowpass top-1 at r = 1, 2, 4, 8 cycles", [f"lowpass_r{r}" for r in RADII[:4]],
             ", "),
        row("cls_isolation: natural, isolated at L = 5, Patch Average, Patch Maximum",
            ", ".join(n(k) for k in ("vit_cls_natural", "vit_cls_isolated_l5",
                                     "vit_patch_average", "vit_patch_maximum")), "-"),
        row("spatial_drop: linearity R^2 of the count curve, layers 0-5",
            ", ".join(n(f"vit_drop_r2_l{i}") for i in LAYERS), "-"),
    ]
    return "\n".join(lines)


def conclusions_block(runs: Sequence[Values]) -> str:
    """README's reading of the table: each sentence one of ``CLAIMS``, numbers filled in."""
    def n(key: str, digits: int = 0) -> str:
        return number(runs, key, digits)

    return wrap(
        "How to read them: the ViT keeps its accuracy under a much stronger low-pass than the "
        f"CNN ({n('vit_lowpass_r2')}% against {n('cnn_lowpass_r2')}% at 2 cycles per image), "
        "the paper's \"ViTs depend far less on high-frequency information\". Background-only "
        f"top-1 is near chance for both ({n('vit_bg_top1')}% and {n('cnn_bg_top1')}%; the "
        "black hole where the shape was is unlike any training image); background-only top-5 "
        f"is {n('cnn_bg_top5')}% for the CNN against 50% chance, so the CNN uses the home "
        f"backgrounds, while the ViT's {n('vit_bg_top5')}% says it learned less from them in "
        "8 epochs: on this small world the paper's \"ViTs beat CNNs with background only\" "
        "does not hold, which is the kind of finding the tool is for. Isolating the CLS token "
        f"before the last block ({n('vit_cls_isolated_l5')}% against "
        f"{n('vit_cls_natural')}% natural) costs this small ViT much more than it costs ViT-B "
        "(78.6 of 84.2 in the paper): with 6 blocks, most of the mixing happens in the last "
        f"one. Single patch tokens through the head reach {n('vit_patch_average')}% on "
        f"average and {n('vit_patch_maximum')}% at the best position, as in the paper's "
        f"Table 1. {drop_sentence(runs)} These are synthetic numbers, not the paper's."
    )


def drop_sentence(runs: Sequence[Values]) -> str:
    """Where the spatial-drop curves are linear: only blocks linear in every run count."""
    linear = sorted(set.intersection(*(set(linear_layers(run)) for run in runs)))
    bent = [i for i in LAYERS if i not in linear]
    stable = "" if len(runs) == 1 else f" in all {len(runs)} runs"
    head = ("Per-channel spatial information (appendix F) falls off linearly with the patches "
            "dropped")
    if not bent:
        return f"{head} in every block{stable}."
    curves = ", ".join(number(runs, f"vit_drop_r2_l{i}", 2) for i in bent)
    plural = "s" if len(bent) > 1 else ""
    if not linear:
        return f"{head} in no block: every count curve bends (R^2 {curves})."
    return (f"{head} (R^2 at least 0.90) in block{'s' if len(linear) > 1 else ''} "
            f"{layer_list(linear)}{stable}; in block{plural} {layer_list(bent)} the count curve "
            f"bends (R^2 {curves}).")


def evaluation_block(runs: Sequence[Values]) -> str:
    """docs/evaluation.md's account of the quickstart's evaluation numbers."""
    def n(key: str, digits: int = 1) -> str:
        return number(runs, key, digits)

    def fgbg(m: str) -> str:
        return (f"top-5 full {n(f'{m}_full_top5')}, foreground-only {n(f'{m}_fg_top5')} "
                f"(normalized {n(f'{m}_fg_top5n')}), background-only {n(f'{m}_bg_top5')} "
                f"(normalized {n(f'{m}_bg_top5n')})")

    def lowpass(m: str) -> str:
        return ", ".join(f"{n(f'{m}_lowpass_r{r}')} at r = {r}" for r in RADII)

    return "\n".join(wrap(part, "  " if part.startswith("- ") else "") for part in (
        "On the synthetic world (10 shape classes drawn over textured backgrounds; 70% of an "
        "image's backgrounds come from its class's \"home\" family, so the background carries "
        "some information), the quickstart's models reach "
        f"{n('vit_natural_top1')}% (ViT) and {n('cnn_natural_top1')}% (CNN) top-1 on the "
        "validation split, and give:\n",
        f"- **fgbg**: ViT {fgbg('vit')}; CNN {fgbg('cnn')}. The shape is the main cue; a "
        "black surround is unlike anything in training; the background alone gives the CNN a "
        "top-5 above the 50% chance level, because of the home families.",
        f"- **lowpass** (top-1): ViT {lowpass('vit')}; CNN {lowpass('cnn')}. The high-pass at "
        f"`r = 1` (the mean colour and the coarsest shading removed) leaves "
        f"{n('vit_highpass_r1')}% (ViT) and {n('cnn_highpass_r1')}% (CNN).",
        f"- **cls_isolation** (ViT): natural {n('vit_cls_natural')}%, CLS isolated at "
        f"`L = 5` {n('vit_cls_isolated_l5')}%, Patch Average {n('vit_patch_average')}%, "
        f"Patch Maximum {n('vit_patch_maximum')}%; `L = 0` equals the natural accuracy.\n",
        "`python bench/demo_numbers.py --db results.db` rewrites these numbers (and the "
        "README's table) from a `make demo` database.",
    ))


BLOCKS: dict[str, Callable[[Sequence[Values]], str]] = {
    "table": table_block, "conclusions": conclusions_block, "evaluation": evaluation_block,
}


def wrap(text: str, indent: str = "") -> str:
    """``text`` wrapped at the docs' width (a trailing newline kept: a paragraph break)."""
    end = "\n" if text.endswith("\n") else ""
    return textwrap.fill(text, WIDTH, subsequent_indent=indent, break_on_hyphens=False,
                         break_long_words=False) + end


def _identical(runs: Sequence[Values]) -> bool:
    return all(run[k] == runs[0][k] for run in runs for k in FIGURES)


# -------------------------------------------------------------------------------- the docs

_BLOCK = re.compile(r"(<!-- demo-numbers:begin (\w+) -->\n)(.*?)(\n<!-- demo-numbers:end \2 -->)",
                    re.S)
_INLINE = re.compile(r"(<!-- demo-numbers:(\w+) -->)(.*?)(<!-- /demo-numbers -->)")


def render(text: str, runs: Sequence[Values]) -> str:
    """``text`` with every marked block and value rewritten from ``runs``."""
    def block(m: re.Match) -> str:
        if m.group(2) not in BLOCKS:
            raise DemoError(f"unknown demo-numbers block {m.group(2)!r}; known: "
                            f"{', '.join(BLOCKS)}")
        return m.group(1) + BLOCKS[m.group(2)](runs) + m.group(4)

    def inline(m: re.Match) -> str:
        if m.group(2) not in FIGURES:
            raise DemoError(f"unknown demo-numbers value {m.group(2)!r}")
        return m.group(1) + number(runs, m.group(2)) + m.group(4)

    return _INLINE.sub(inline, _BLOCK.sub(block, text))


def stale_docs(root: Path, runs: Sequence[Values], *, write: bool) -> list[str]:
    """The docs (relative paths) whose numbers differ from ``runs``; rewritten if ``write``."""
    stale = []
    for rel in DOCS:
        path = root / rel
        text = path.read_text(encoding="utf-8")
        new = render(text, runs)
        if new != text:
            stale.append(rel)
            if write:
                path.write_text(new, encoding="utf-8")
    return stale


def summary(runs: Sequence[Values], names: Sequence[str]) -> str:
    """Per number: each run's value, the mean and the range; then each claim's record."""
    lines = [f"{'number':24} " + " ".join(f"{n[-12:]:>12}" for n in names)
             + f" {'mean':>9} {'range':>9}"]
    for key in [*FIGURES, "run_seconds"]:
        values = [run[key] for run in runs]
        lines.append(f"{key:24} " + " ".join(f"{v:12.4f}" for v in values)
                     + f" {statistics.mean(values):9.4f} {max(values) - min(values):9.4f}")
    lines.append("")
    for claim in CLAIMS:
        held = sum(claim.holds(run) for run in runs)
        lines.append(f"{'holds' if held == len(runs) else 'FAILS'} {held}/{len(runs)}: "
                     f"{claim.name}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, root: Path = ROOT) -> int:
    """Parse the command line, read the databases, then rewrite, check or summarise."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", action="append", required=True,
                        help="a `make demo` database (a path or a SQLAlchemy URL); repeat it "
                        "to summarise several runs")
    parser.add_argument("--study", default="quickstart")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="change nothing; exit 1 if stale")
    mode.add_argument("--summary", action="store_true", help="print every number per run")
    args = parser.parse_args(argv)
    try:
        runs = [read_values(db, args.study) for db in args.db]
        if args.summary:
            print(summary(runs, args.db))
            return 1 if failed_claims(runs) else 0
        stale = stale_docs(root, runs, write=not args.check)
    except DemoError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for rel in stale:
        print(f"{rel}: {'stale' if args.check else 'rewritten'}", file=sys.stderr)
    for problem in failed_claims(runs):
        print(f"claim does not hold: {problem}", file=sys.stderr)
    return 1 if (args.check and stale) or failed_claims(runs) else 0


if __name__ == "__main__":
    sys.exit(main())
