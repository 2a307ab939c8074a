"""End-to-end run of ``studies/paper.yaml`` with real-size, random-init models and no ImageNet.

Rewrites the paper's study so that every model is built untrained (same architectures: ViT-B/L
at 384 px, ResNet-50/152, DenseNet-121, MobileNetV2) and both datasets point at the synthetic
world in ImageNet layout (class folders and VOC box files), ``--limit`` images each; then runs
``vitstudy run`` and ``vitstudy report`` in a temporary folder and prints the wall time. The
accuracies are meaningless (random weights); what it checks is that every task of the paper's
study runs, at real model sizes, through to the report.
Run: ``python bench/paper_smoke.py [--limit 4] [--device cuda] [--batch-size 8] [--workers 8]
[--precision bf16] [--models vit_b32 resnet50]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
#: The paper study's models (``studies/paper.yaml``), the choices of ``--models``.
MODELS = ["vit_b16", "vit_b32", "vit_l16", "vit_l32", "resnet50", "resnet152", "densenet121",
          "mobilenet_v2"]


def smoke_study(folder: Path, limit: int, models: list[str] | None = None) -> Path:
    """``studies/paper.yaml`` with untrained models and the synthetic world, written to
    ``folder``; returns the study file. ``models``: keep only these (and the entries using
    them)."""
    import yaml

    from runner.data.synthetic import ensure_world
    from runner.schema import SyntheticDataset

    world = ensure_world(SyntheticDataset(kind="synthetic", split="val"))
    study = yaml.safe_load((ROOT / "studies" / "paper.yaml").read_text())
    study["name"] = "paper_smoke"
    for name, split in (("val", "val"), ("train_boxed", "train")):
        study["datasets"][name] = {"kind": "imagenet", "root": str(world / split),
                                   "boxes": str(world / f"{split}_boxes"),
                                   "subset": {"limit": limit, "seed": 0}}
    for model in study["models"].values():
        model["pretrained"] = False
    if models:
        study["models"] = {name: study["models"][name] for name in models}
        for entry in study["studies"]:
            entry["models"] = [name for name in entry["models"] if name in models]
        study["studies"] = [entry for entry in study["studies"] if entry["models"]]
    path = folder / "paper_smoke.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


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
    parser.add_argument("--keep", action="store_true", help="keep the run's folder")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="vitstudy-paper-smoke-"))
    study = smoke_study(folder, args.limit, args.models)
    env = dict(os.environ, VITSTUDY_DB=f"sqlite:///{folder / 'results.db'}",
               VITSTUDY_ARTIFACTS=str(folder / "artifacts"))
    vitstudy = [sys.executable, "-m", "runner"]
    started = time.perf_counter()
    options = ["--device", args.device, "--batch-size", args.batch_size]
    for name in ("workers", "precision"):
        if getattr(args, name) is not None:
            options += [f"--{name}", str(getattr(args, name))]
    subprocess.run([*vitstudy, "run", str(study), *options], env=env, cwd=folder, check=True)
    ran = time.perf_counter() - started
    same_keys = ["--precision", args.precision] if args.precision else []  # report finds them
    subprocess.run([*vitstudy, "report", str(study), *same_keys], env=env, cwd=folder,
                   check=True)
    which = ", ".join(args.models) if args.models else "all models"
    print(f"paper study ({which}), untrained real-size models, {args.limit} images per dataset: "
          f"run {ran:.1f} s, report {time.perf_counter() - started - ran:.1f} s; "
          f"folder {folder}{'' if args.keep else ' (removed)'}")
    if not args.keep:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
