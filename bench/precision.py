"""fp32 vs bf16 (or tf32): throughput and agreement of the fused evaluation pass.

Trains the quickstart ViT for ``--epochs`` on the quickstart's synthetic world (0: untrained,
whose near-tied logits make agreement meaningless), then runs fgbg + lowpass (7 radii) +
cls_isolation in one fused pass over the world's validation split at each precision, and
prints images per second (the fused pass, and bare forwards of the same batches), the speed-up
over fp32, and agreement with fp32: the largest top-1 difference over every metric, in points,
and the share of per-image top-1 hits that differ. bf16 pays off where the hardware has it (a
GPU's tensor cores; a CPU without AVX512-BF16 or AMX emulates it, slower than fp32).
Run: ``python bench/precision.py [--device cpu|cuda] [--precisions fp32,bf16] [--epochs 3]
[--images 600] [--batch-size 64] [--repeat 2] [--workers 0] [--threads N]``.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_models import quickstart_vit  # noqa: E402
from fused_eval import bare_forward_seconds, run_fused_pass  # noqa: E402

from runner.kinds.base import TaskContext  # noqa: E402
from runner.store import MemorySink  # noqa: E402

QUICKSTART = ROOT / "studies" / "quickstart.yaml"


def quickstart_world(split: str, limit: int | None = None) -> Any:
    """The quickstart study's synthetic dataset of ``split`` (``shapes`` is the train split,
    ``shapes_val`` the validation split), ``limit`` images of it at most."""
    from runner.data import open_dataset
    from runner.schema import Subset
    from runner.spec import load_study

    spec = load_study(QUICKSTART).study.datasets[split]
    if limit:
        spec = spec.model_copy(update={"subset": Subset(limit=limit)})
    return open_dataset(split, spec)


def trained_model(epochs: int, device: str) -> Any:
    """The quickstart ViT on ``device``, trained by the ``train`` kind for ``epochs`` on the
    quickstart world (the study's recipe but the epochs; none: untrained)."""
    from runner.kinds import get_kind
    from runner.spec import load_study

    model = quickstart_vit().to(device)
    if epochs:
        recipe = load_study(QUICKSTART).study.models["vit"].train
        params = recipe.model_dump(exclude={"dataset", "val"}) | {"epochs": epochs}
        train = get_kind("train")
        ctx = TaskContext(key="train", kind="train", params=train.Params(**params), seed=0,
                          sink=MemorySink(), device=device, log=lambda _: None,
                          load_model=lambda: model,
                          load_dataset=lambda: quickstart_world("shapes"))
        started = time.perf_counter()
        train.run(ctx)
        print(f"trained {epochs} epoch(s) in {time.perf_counter() - started:.1f} s")
    return model.eval()


def timed_passes(model: Any, dataset: Any, precisions: list[str], args: argparse.Namespace
                 ) -> tuple[dict[str, float], dict[str, float], dict[str, list[TaskContext]]]:
    """Best fused-pass and bare-forward seconds per precision, and each precision's task
    contexts (results); precisions interleaved ``repeat`` times after a one-batch warm-up
    each, so that load from other jobs falls on all alike."""
    options = {"device": args.device, "workers": args.workers}
    fused: dict[str, list[float]] = {p: [] for p in precisions}
    bare: dict[str, list[float]] = {p: [] for p in precisions}
    results: dict[str, list[TaskContext]] = {}
    warm = quickstart_world("shapes_val", min(len(dataset), args.batch_size))
    for precision in precisions:  # warm-up: allocator, kernels, autocast's first casts
        run_fused_pass(model, warm, args.batch_size, precision=precision, **options)
    for _ in range(args.repeat):
        for precision in precisions:
            seconds, results[precision] = run_fused_pass(model, dataset, args.batch_size,
                                                         precision=precision, **options)
            fused[precision].append(seconds)
            bare[precision].append(bare_forward_seconds(model, len(dataset), args.batch_size,
                                                        args.device, precision))
    return ({p: min(t) for p, t in fused.items()}, {p: min(t) for p, t in bare.items()},
            results)


def top1_rows(ctxs: list[TaskContext]) -> dict[tuple, float]:
    """Every top-1 metric of the tasks, by (task, variant, layer, x, position)."""
    return {(ctx.kind, m.variant, m.layer, m.x, m.position): m.value
            for ctx in ctxs for m in ctx.result.metrics if m.name == "top1"}


def per_image_hits(ctxs: list[TaskContext]) -> dict[tuple, Any]:
    """Every per-image top-1 hit array of the tasks' ``correct`` files, by (task, variant, x)."""
    import numpy as np

    from runner.results.correctness import Correctness

    out = {}
    for ctx in ctxs:
        for row in ctx.result.artifacts:
            if row.role != "correct":
                continue
            with np.load(io.BytesIO(ctx.sink.files[row.path])) as npz:
                table = Correctness.from_arrays({k: npz[k] for k in npz.files})
            out |= {(ctx.kind, key.variant, key.x): hits
                    for key, hits in table.hits.items() if key.k == 1}
    return out


#: The issue's agreement target: every top-1 within this many points of fp32's.
AGREEMENT_POINTS = 0.5


def agreement(reference: list[TaskContext], other: list[TaskContext]) -> dict[str, Any]:
    """Top-1 of ``other`` against ``reference``: the largest difference in points and the
    metric where it is, how many metrics are within ``AGREEMENT_POINTS``, and the per-image
    top-1 hits that differ out of those compared."""
    ref_rows, rows = top1_rows(reference), top1_rows(other)
    gaps = {key: abs(rows[key] - value) for key, value in ref_rows.items()}
    where = max(gaps, key=gaps.__getitem__)
    ref_hits, hits = per_image_hits(reference), per_image_hits(other)
    return {"largest": gaps[where], "where": " ".join(str(p) for p in where if p is not None),
            "within": sum(gap <= AGREEMENT_POINTS for gap in gaps.values()),
            "metrics": len(gaps),
            "flipped": sum(int((hits[key] != value).sum()) for key, value in ref_hits.items()),
            "hits": sum(value.size for value in ref_hits.values())}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1...")
    parser.add_argument("--precisions", default="fp32,bf16",
                        help="comma-separated, the first is the reference (fp32, tf32, bf16)")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs (0: untrained)")
    parser.add_argument("--images", type=int, default=None,
                        help="a subset of the validation split (default: all 600 images)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=2, help="timed runs of each; best counts")
    parser.add_argument("--workers", type=int, default=0, help="decode worker processes")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    precisions = args.precisions.split(",")
    model = trained_model(args.epochs, args.device)
    dataset = quickstart_world("shapes_val", args.images)
    n = len(dataset)
    print(f"model: quickstart vit ({model.info.depth} blocks, {model.preprocess.size} px, "
          f"{args.epochs} epoch(s) trained), dataset: quickstart val, {n} images, batch "
          f"{args.batch_size}, device {args.device}, {torch.get_num_threads()} threads, "
          f"{args.workers} workers; fgbg + lowpass (7 radii) + cls_isolation fused")
    fused, bare, results = timed_passes(model, dataset, precisions, args)
    reference = precisions[0]
    natural = top1_rows(results[reference])[("lowpass", "natural", None, None, None)]
    print(f"{reference} top-1 on the natural images: {natural:.2f}%")
    for precision in precisions:
        print(f"{precision}: fused pass {n / fused[precision]:.0f} images/s "
              f"({fused[precision]:.2f} s, {fused[reference] / fused[precision]:.2f}x "
              f"{reference}); bare forwards {n / bare[precision]:.0f} images/s "
              f"({bare[reference] / bare[precision]:.2f}x {reference})")
    for precision in precisions[1:]:
        got = agreement(results[reference], results[precision])
        print(f"{precision} vs {reference}: top-1 within {AGREEMENT_POINTS} points on "
              f"{got['within']} of {got['metrics']} metrics; largest difference "
              f"{got['largest']:.2f} points ({got['where']}; one image is {100 / n:.2f}); "
              f"per-image top-1 hits differing {got['flipped']} of {got['hits']} "
              f"({100 * got['flipped'] / got['hits']:.2f}%)")


if __name__ == "__main__":
    main()
