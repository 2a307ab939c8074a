"""End-to-end run of the paper's study files (``studies/paper.yaml``, the evaluation half, and
``studies/paper_visual.yaml``, the visual half) with real-size, random-init models and no
ImageNet.

Rewrites each study so that every model is built untrained (same architectures: ViT-B/L at
384 px, ResNet-50/152, DenseNet-121, MobileNetV2, DeiT, CoaT, ConViT, PiT, Swin, Twins, CLIP
ViT-B/32 and B/16) and every dataset points at the synthetic world in ImageNet layout (class
folders and VOC box files), ``--limit`` images each; visualize runs ``--steps`` steps with
``--copies`` copies, and a `features: all` entry keeps its split into chunk tasks but only its
first ``--chunk-features`` features of each layer (two chunks: the whole 3,072 would be hours of
optimization, not a smoke test). Then, in a temporary folder, ``vitstudy run``, ``vitstudy
report`` and, where the command exists, ``vitstudy atlas``, and prints the wall times. The
results are meaningless (random weights); what it checks is that every task of every paper
study runs, at real model sizes, through to the report and the atlas.
Run: ``python bench/paper_smoke.py [--limit 4] [--device cuda] [--batch-size 8] [--workers 8]
[--precision bf16] [--models vit_b32 resnet50] [--studies paper paper_visual]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
#: The paper's study files (``studies/<name>.yaml``), the choices of ``--studies``.
STUDIES = ["paper", "paper_visual"]
#: The paper studies' models, the choices of ``--models``.
MODELS = ["vit_b16", "vit_b32", "vit_l16", "vit_l32", "resnet50", "resnet152", "densenet121",
          "mobilenet_v2", "deit_b", "coat_lite_s", "convit_b", "pit_b", "swin_b", "twins_svt_b",
          "clip_b32", "clip_b16"]


def smoke_study(folder: Path, limit: int, models: list[str] | None = None, *,
                study: str = "paper", steps: int = 2, copies: int = 2,
                chunk_features: int = 4) -> Path | None:
    """``studies/<study>.yaml`` with untrained models and the synthetic world, written to
    ``folder``; returns the study file, or None when ``models`` leaves it no entry.
    ``models``: keep only these (and the entries using them)."""
    import yaml

    from runner.data.synthetic import ensure_world
    from runner.schema import SyntheticDataset

    world = ensure_world(SyntheticDataset(kind="synthetic", split="val"))
    data = yaml.safe_load((ROOT / "studies" / f"{study}.yaml").read_text())
    data["name"] = f"{study}_smoke"
    for name, dataset in data["datasets"].items():
        split = "train" if name.startswith("train") else "val"
        data["datasets"][name] = {"kind": "imagenet", "root": str(world / split),
                                  "subset": {"limit": limit, "seed": 0}}
        if "boxes" in dataset:
            data["datasets"][name]["boxes"] = str(world / f"{split}_boxes")
    for model in data["models"].values():
        model["pretrained"] = False
    if models:
        data["models"] = {n: m for n, m in data["models"].items() if n in models}
        for entry in data["studies"]:
            entry["models"] = [n for n in entry["models"] if n in models]
        data["studies"] = [entry for entry in data["studies"] if entry["models"]]
    if not data["studies"]:
        return None
    for entry in data["studies"]:
        _fewer_features(entry, chunk_features)
        if entry["kind"] == "visualize":
            _smaller(entry, steps, copies)
        if entry["kind"] == "concepts":  # needs class folders named by WordNet id
            data["datasets"]["val_wnids"] = {"kind": "imagenet",
                                             "root": str(wordnet_mirror(world / "val", folder)),
                                             "subset": {"limit": limit, "seed": 0}}
            entry["dataset"] = "val_wnids"
    path = folder / f"{study}_smoke.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def wordnet_mirror(split: Path, folder: Path) -> Path:
    """The world's split as ImageNet has it, class folders named by WordNet id (links to the
    shape folders), for the kinds that read classes in WordNet (concepts); no boxes (their
    files name the shapes)."""
    from runner.data.synthetic_render import SHAPE_WNIDS

    mirror = folder / "world_wnids"
    mirror.mkdir(exist_ok=True)
    for shape in sorted(p.name for p in split.iterdir() if p.is_dir()):
        link = mirror / SHAPE_WNIDS[shape]
        if not link.exists():
            link.symlink_to(split / shape, target_is_directory=True)
    return mirror


def _fewer_features(entry: dict[str, Any], chunk_features: int) -> None:
    """`features: all` cut to the first ``chunk_features`` features of each layer, whatever
    the kind (every feature of a CLIP is 36,864 atlas pages); a visualize entry keeps its
    split, into two chunks per layer."""
    params = entry.setdefault("params", {})
    if params.get("features") == "all":
        params["features"] = {"start": 0, "stop": chunk_features}
        if entry["kind"] == "visualize":
            params["chunk"] = max(1, chunk_features // 2)


def _smaller(entry: dict[str, Any], steps: int, copies: int) -> None:
    """A visualize entry at smoke size: few steps and copies, no retries."""
    from runner.kinds import get_kind

    params = entry.setdefault("params", {})
    params.update(steps=steps, copies=copies, trace_every=1)
    if "retries" in get_kind("visualize").Params.model_fields:
        params["retries"] = 0  # random weights: most features "fail"; retrying them is no test


def has_atlas() -> bool:
    """Whether this checkout's ``vitstudy`` has the ``atlas`` command."""
    done = subprocess.run([sys.executable, "-m", "runner", "atlas", "--help"],
                          capture_output=True, text=True)
    return done.returncode == 0


def run_one(study: Path, folder: Path, args: argparse.Namespace, atlas: bool) -> str:
    """run, report (and atlas) of one smoke study in ``folder``; the line it prints."""
    env = dict(os.environ, VITSTUDY_DB=f"sqlite:///{folder / 'results.db'}",
               VITSTUDY_ARTIFACTS=str(folder / "artifacts"))
    vitstudy = [sys.executable, "-m", "runner"]
    options = ["--device", args.device, "--batch-size", args.batch_size]
    for name in ("workers", "precision"):
        if getattr(args, name) is not None:
            options += [f"--{name}", str(getattr(args, name))]
    same_keys = ["--precision", args.precision] if args.precision else []  # report finds them
    started = time.perf_counter()
    subprocess.run([*vitstudy, "run", str(study), *options], env=env, cwd=folder, check=True)
    ran = time.perf_counter() - started
    subprocess.run([*vitstudy, "report", str(study), *same_keys], env=env, cwd=folder,
                   check=True)
    reported = time.perf_counter() - started - ran
    line = f"run {ran:.1f} s, report {reported:.1f} s"
    if atlas:
        subprocess.run([*vitstudy, "atlas", str(study), *same_keys], env=env, cwd=folder,
                       check=True)
        line += f", atlas {time.perf_counter() - started - ran - reported:.1f} s"
    return line


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=4, help="images per dataset")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", default="8", help="images per batch, or auto")
    parser.add_argument("--workers", type=int, default=None,
                        help="decode processes (default: vitstudy run's)")
    parser.add_argument("--precision", choices=["fp32", "tf32", "bf16"], default=None,
                        help="the forwards' arithmetic (default: vitstudy run's)")
    parser.add_argument("--models", nargs="+", default=None, choices=MODELS,
                        help="run only these of the paper's models (default: all)")
    parser.add_argument("--studies", nargs="+", default=STUDIES, choices=STUDIES,
                        help="which paper study files (default: both)")
    parser.add_argument("--steps", type=int, default=2, help="visualize: optimizer steps")
    parser.add_argument("--copies", type=int, default=2, help="visualize: augmented copies")
    parser.add_argument("--chunk-features", type=int, default=4,
                        help="visualize `features: all`: this many per layer, in two chunks")
    parser.add_argument("--keep", action="store_true", help="keep the run's folder")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="vitstudy-paper-smoke-"))
    which = ", ".join(args.models) if args.models else "all models"
    atlas = has_atlas()
    for name in args.studies:
        study = smoke_study(folder, args.limit, args.models, study=name, steps=args.steps,
                            copies=args.copies, chunk_features=args.chunk_features)
        if study is None:
            print(f"{name} study: none of {which} is in it; skipped")
            continue
        times = run_one(study, folder, args, atlas)
        print(f"{name} study ({which}), untrained real-size models, {args.limit} images per "
              f"dataset: {times}; folder {folder}{'' if args.keep else ' (removed)'}")
    if not atlas:
        print("atlas: not built (this vitstudy has no `atlas` command)")
    if not args.keep:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
