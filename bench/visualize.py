"""Features per minute of activation maximization, at equal steps:

(a) the authors' way: one feature per optimization (a batch of its 8 augmented copies) and the
    full forward through every block;
(b) this project's: many features in one batch (features x copies) and the forward stopped
    after the feature's block.

Run: ``.venv/bin/python bench/visualize.py [--models quickstart vit_base] [--steps 5]``.
Models are random-init (timing does not need weights).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_models import quickstart_vit, vit_base  # noqa: E402

MODELS = {"quickstart": quickstart_vit, "vit_base": vit_base}


def best_seconds(runs: dict[str, object], repeats: int) -> dict[str, float]:
    """The fastest of ``repeats`` timings of each run, the runs interleaved so that a burst of
    load from other processes hits them alike."""
    best = {name: float("inf") for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def bench_model(name: str, *, layers: list[int], features: int, steps: int, batch: int,
                device: str, repeats: int, precision: str = "fp32") -> None:
    """Time (a) and (b) per layer on one model and print a table row per layer and in all."""
    import torch

    from runner.kinds.visualize.run import FeatureJob, Recipe, chunks, optimize_features

    model = MODELS[name]().to(device).eval()
    recipe = Recipe(steps=steps, trace_every=steps)
    sites = {s.layer: s for s in model.info.sites.values() if s.what == "mlp"}
    per_chunk = max(1, batch // 8)
    warm = [FeatureJob(sites[layers[0]], 0)]
    optimize_features(model, warm, Recipe(steps=1), seed=0, device=device,
                      precision=precision)  # first-call costs
    print(f"\n{name}: {len(layers)} layers x {features} features, {steps} steps, "
          f"(b) {min(per_chunk, features)} features per batch, device {device}, "
          f"{torch.get_num_threads()} threads, precision {precision} for both, best of {repeats}")
    print(f"{'layer':>6} {'(a) feat/min':>13} {'(b) feat/min':>13} {'speed-up':>9}")
    total_a = total_b = 0.0
    for layer in layers:
        jobs = [FeatureJob(sites[layer], f) for f in range(features)]

        def authors(jobs=jobs) -> None:
            for job in jobs:
                optimize_features(model, [job], recipe, seed=0, device=device, truncated=False,
                                  precision=precision)

        def batched(jobs=jobs) -> None:
            for group in chunks(jobs, per_chunk):
                optimize_features(model, group, recipe, seed=0, device=device,
                                  precision=precision)

        secs = best_seconds({"a": authors, "b": batched}, repeats)
        total_a, total_b = total_a + secs["a"], total_b + secs["b"]
        print(f"{layer:>6} {60 * features / secs['a']:>13.1f} {60 * features / secs['b']:>13.1f} "
              f"{secs['a'] / secs['b']:>8.2f}x")
    n = features * len(layers)
    print(f"{'all':>6} {60 * n / total_a:>13.1f} {60 * n / total_b:>13.1f} "
          f"{total_a / total_b:>8.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--layers", type=int, nargs="+", default=list(range(6)))
    parser.add_argument("--features", type=int, default=None,
                        help="features per layer (default: 8 quickstart, 2 vit_base)")
    parser.add_argument("--steps", type=int, default=None,
                        help="optimizer steps (default: 5 quickstart, 3 vit_base)")
    parser.add_argument("--batch", type=int, default=None,
                        help="(b): images per forward (default 128 on CPU, 512 on GPU)")
    parser.add_argument("--device", default="cuda" if _cuda() else "cpu")
    parser.add_argument("--repeats", type=int, default=3, help="timings per run; the best counts")
    parser.add_argument("--precision", default="fp32",
                        help="forward precision of both (a) and (b), or a comma list (fp32,bf16): "
                        "a table per precision; the image parameters stay float32")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    batch = args.batch or (512 if args.device.startswith("cuda") else 128)
    for name in args.models:
        small = name == "quickstart"
        for precision in args.precision.split(","):
            bench_model(name, layers=args.layers, features=args.features or (8 if small else 2),
                        steps=args.steps or (5 if small else 3), batch=batch,
                        device=args.device, repeats=args.repeats, precision=precision)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    main()
