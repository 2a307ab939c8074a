"""The atlas of every feed-forward feature of the quickstart ViT (6 layers x 384 = 2,304
features): build time, bytes per feature, and the rebuild after one new task.

The quickstart's ViT (untrained unless --trained: the atlas's cost does not depend on what the
weights learned) gets a visualize of all its features with a few steps, a top-k ranking of all
of them on the quickstart's validation world and spatial-drop curves of 8 features per layer;
these run first, into a temporary database (not timed). Then `vitstudy atlas` is timed as a
user runs it (a fresh process, imports included): the first build, a rebuild with nothing new,
and a rebuild after one new task (a visualize of 4 layer-0 features at another TV weight).
Targets: first build under 60 s, under 15 KB per feature, rebuild after one task under 5 s.

    python bench/atlas.py [--steps 2] [--trained] [--keep DIR]

--keep DIR works in DIR and keeps it: a second call reuses its finished tasks (the visualize
of 2,304 features is most of the setup) and times the atlas afresh.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VITSTUDY = Path(sys.executable).parent / "vitstudy"

STUDY = """\
name: atlas-bench
datasets:
  shapes: {{kind: synthetic, split: train, home_prob: 0.7, colour_prob: 0.9}}
  shapes_val: {{kind: synthetic, split: val, home_prob: 0.7, colour_prob: 0.9}}
models:
  vit:
    source: timm
    name: vit_tiny_patch16_224
    pretrained: false
    kwargs: {{img_size: 64, patch_size: 8, depth: 6, embed_dim: 96, num_heads: 3,
             num_classes: 10}}
    preprocess: {{crop_pct: 1.0}}
{train}studies:
  - kind: visualize
    models: [vit]
    dataset: shapes_val
    params: {{layers: all, features: all, steps: {steps}, copies: 2, panels: false}}
  - kind: topk
    models: [vit]
    dataset: shapes_val
    params: {{layers: all, features: all, render: 0}}
  - kind: spatial_drop
    models: [vit]
    dataset: shapes_val
    params: {{layers: all, features: {{top: 8}}, seeds: 1, percents: [0, 25, 50, 75, 100]}}
"""
TRAIN = "    train: {dataset: shapes, val: shapes_val, epochs: 2, batch_size: 64, lr: 0.001}\n"
NEW_TASK = """\
  - kind: visualize
    models: [vit]
    dataset: shapes_val
    params: {{layers: [0], features: [0, 1, 2, 3], steps: {steps}, copies: 2, panels: false,
             tv_weight: 0.01}}
"""


def vitstudy(work: Path, *args: str) -> tuple[float, str]:
    """Run the CLI in a fresh process on the bench's database; (wall seconds, its output)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    command = [str(VITSTUDY), "--db", f"sqlite:///{work / 'results.db'}",
               "--artifacts", str(work / "artifacts"), *args]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds, done.stdout + done.stderr


def written(output: str) -> str:
    """The atlas's summary line of a build."""
    found = re.search(r"atlas: (\d+) features; (\d+) files written, (\d+) unchanged, "
                      r"(\d+) removed", output)
    if found is None:
        raise SystemExit(f"no summary in the atlas's output:\n{output}")
    return found[0].removeprefix("atlas: ")


def sizes(atlas: Path, features: int) -> tuple[int, int, int]:
    """(total bytes, bytes per feature, largest feature's own files)."""
    files = [p for p in atlas.rglob("*") if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    own: dict[str, int] = {}
    for p in files:
        stem = re.match(r"(f\d{5})", p.name)
        if stem:
            key = f"{p.parent.parent if p.parent.name == 'img' else p.parent}/{stem[1]}"
            own[key] = own.get(key, 0) + p.stat().st_size
    return total, total // max(1, features), max(own.values(), default=0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2, help="visualize steps (default 2)")
    parser.add_argument("--trained", action="store_true",
                        help="train the ViT first (2 epochs) instead of using it untrained")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="vitstudy-atlas-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    study = work / "study.yaml"
    base = STUDY.format(steps=args.steps, train=TRAIN if args.trained else "")
    study.write_text(base)
    seconds, _ = vitstudy(work, "run", str(study))
    print(f"tasks run:            {seconds:.0f} s (not part of the atlas's time)")

    atlas = work / "atlas"
    shutil.rmtree(atlas, ignore_errors=True)  # the bench's own folder (a kept one: rebuilt)
    first, out = vitstudy(work, "atlas", str(study), "--out", str(atlas))
    summary = written(out)
    features = int(summary.split()[0])
    total, per_feature, largest = sizes(atlas, features)
    same, out_same = vitstudy(work, "atlas", str(study), "--out", str(atlas))
    study.write_text(base + NEW_TASK.format(steps=args.steps))
    vitstudy(work, "run", str(study))
    again, out_again = vitstudy(work, "atlas", str(study), "--out", str(atlas))

    print(f"features:             {features}")
    print(f"first build:          {first:.1f} s  ({summary}; target < 60 s)")
    print(f"size:                 {total / 1e6:.1f} MB, {per_feature / 1e3:.1f} KB per feature "
          f"(largest feature's page + strips: {largest / 1e3:.1f} KB; target < 15 KB)")
    print(f"rebuild, nothing new: {same:.1f} s  ({written(out_same)})")
    print(f"rebuild, one task:    {again:.1f} s  ({written(out_again)}; target < 5 s)")
    print(f"atlas:                {atlas / 'index.html'}")
    if args.keep is None:
        shutil.rmtree(work)
    ok = first < 60 and per_feature < 15_000 and again < 5
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
