"""Fused vs separate evaluation: fgbg + lowpass (7 radii) + cls_isolation on the synthetic world.

Builds the quickstart ViT's architecture untrained (timing does not depend on weights), runs the
three tasks once in one fused pass and once as three separate runs, checks that both give the
same results, and prints images decoded per dataset image, the wall-time ratio and the fused
pass's efficiency: its wall time over the model-compute bound (the forward-equivalents it
computes times a bare forward over the dataset, timed in the same run).
Run: ``python bench/fused_eval.py [--batch-size 64] [--repeat 2] [--threads 1] [--device cuda]
[--workers 0] [--precision bf16] [--images 600]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_models import quickstart_vit  # noqa: E402

from runner.data.base import Batch, ImageDataset  # noqa: E402
from runner.kinds.base import TaskContext  # noqa: E402
from runner.store import MemorySink  # noqa: E402

KINDS = {"fgbg": {}, "lowpass": {"radii": [2, 4, 8, 16, 32, 64, 112]}, "cls_isolation": {}}
#: What a fused pass of this bench should cost at most on a CPU, in model-compute bounds.
EFFICIENCY_TARGET = 1.3


class CountingDataset(ImageDataset):
    """A dataset that counts the images its batches decode (``decoded``), in this process or
    in decode workers alike: it counts what ``batches`` hands out, skipped images included."""

    decoded: int = 0

    def batches(self, *args: Any, **kwargs: Any) -> Iterator[Batch]:
        """``ImageDataset.batches``, each batch's images (and skipped ones) counted."""
        for batch in super().batches(*args, **kwargs):
            self.decoded += len(batch) + batch.skipped
            yield batch


def counting(dataset: ImageDataset) -> CountingDataset:
    """``dataset`` as a ``CountingDataset`` (same samples, same decoding)."""
    copy = CountingDataset.__new__(CountingDataset)
    copy.__dict__.update(vars(dataset))
    copy.decoded = 0
    return copy


def synthetic_val(limit: int | None = None) -> CountingDataset:
    """The synthetic world's validation split (generated on first use), counting decodes;
    ``limit``: a subset of that many images (seed 0)."""
    from runner.data.synthetic import open_synthetic
    from runner.schema import Subset, SyntheticDataset

    subset = Subset(limit=limit) if limit else None
    spec = SyntheticDataset(kind="synthetic", split="val", subset=subset)
    return counting(open_synthetic("shapes_val", spec))


def count_block_work(model) -> dict[str, int]:
    """Counts token-block evaluations (tokens x blocks run) and tokens through the per-token
    head (patch heads): a noise-free measure of the transformer work a pass computes."""
    parts = model.vit
    run_blocks, token_head = parts.run_blocks, parts.token_head
    counter = {"token_blocks": 0, "head_tokens": 0}

    def counted(tokens, start: int, end: int):
        counter["token_blocks"] += tokens.shape[0] * tokens.shape[1] * (end - start)
        return run_blocks(tokens, start, end)

    def counted_head(tokens):
        counter["head_tokens"] += tokens.shape[0] * tokens.shape[1]
        return token_head(tokens)

    parts.run_blocks, parts.token_head = counted, counted_head
    return counter


def pass_options(device: str = "cpu", workers: int = 0, precision: str | None = None
                 ) -> dict[str, Any]:
    """The settings both a task context and ``run_fused`` take: device, decode workers and,
    only when asked for, the forwards' precision (``--precision``)."""
    options: dict[str, Any] = {"device": device, "workers": workers}
    if precision is not None:
        options["precision"] = precision
    return options


def contexts(model, dataset, batch_size: int, **options: Any) -> list[TaskContext]:
    """One task context per kind, with the executor's evaluation pass (``run_pass``)."""
    from runner.execute.fused import pass_runner
    from runner.kinds import get_kind

    ctxs = []
    for name, params in KINDS.items():
        ctx = TaskContext(key=name, kind=name, params=get_kind(name).Params(**params), seed=0,
                          sink=MemorySink(), batch_size=batch_size, model_name="bench model",
                          load_model=lambda: model, load_dataset=lambda: dataset,
                          log=lambda _: None, **options)
        ctx.run_pass = pass_runner(ctx)
        ctxs.append(ctx)
    return ctxs


def run_fused_pass(model, dataset, batch_size: int, **options: Any
                   ) -> tuple[float, list[TaskContext]]:
    """The three tasks in one fused pass: (wall seconds, their contexts with results)."""
    from runner.execute.fused import run_fused
    from runner.kinds import get_kind

    ctxs = contexts(model, dataset, batch_size, **options)
    started = time.perf_counter()
    evaluators = [get_kind(ctx.kind).evaluator(ctx) for ctx in ctxs]
    errors = run_fused(evaluators, model, dataset, batch_size=batch_size, **options)
    seconds = _synced(options.get("device", "cpu"), started)
    failed = {key: error for key, error in errors.items() if error is not None}
    if failed:
        raise RuntimeError(f"fused pass failed: {failed}")
    return seconds, ctxs


def run_separately(model, dataset, batch_size: int, **options: Any
                   ) -> tuple[float, list[TaskContext]]:
    """The three tasks as three runs, each with its own pass over the data."""
    from runner.kinds import get_kind

    ctxs = contexts(model, dataset, batch_size, **options)
    started = time.perf_counter()
    for ctx in ctxs:
        get_kind(ctx.kind).run(ctx)
    return _synced(options.get("device", "cpu"), started), ctxs


def bare_forward_seconds(model, images: int, batch_size: int, device: str = "cpu",
                         precision: str | None = None) -> float:
    """Wall seconds of plain forwards over ``images`` random inputs of the model's size, in
    batches of ``batch_size`` as the pass makes them: one forward of the dataset's cost."""
    import torch

    size = model.preprocess.size
    model = model.to(device).eval()
    sizes = [batch_size] * (images // batch_size) + [images % batch_size] * bool(
        images % batch_size)
    inputs = {b: torch.rand(b, 3, size, size, device=device) for b in set(sizes)}
    with torch.inference_mode(), _precision_scope(device, precision):
        _synced(device, 0.0)  # the device's queued work finishes first
        started = time.perf_counter()
        for b in sizes:
            model(inputs[b])
        return _synced(device, started)


def forward_equivalents(model, work: dict[str, int], images: int) -> float:
    """The work counted by ``count_block_work`` in plain forwards over ``images`` images:
    token-blocks over a forward's (images x tokens x depth), distinct variants and CLS
    isolation's streams alike; patch heads added at their multiply-adds per token over a
    block's (D x classes against 12 D^2 + 2 T D, a standard ViT block with MLP ratio 4)."""
    import torch

    size, vit = model.preprocess.size, model.vit
    with torch.inference_mode():
        tokens = vit.embed(torch.zeros(1, 3, size, size, device=_device_of(model)))
        classes = model(torch.zeros(1, 3, size, size, device=_device_of(model))).shape[-1]
    count, dim = tokens.shape[1], tokens.shape[2]
    per_forward = images * count * vit.depth
    head_in_blocks = dim * classes / (12 * dim * dim + 2 * count * dim)
    return (work["token_blocks"] + work["head_tokens"] * head_in_blocks) / per_forward


@dataclass
class Measured:
    """What ``measure`` timed and counted: every timing of each run, and the last counts."""

    images: int
    seconds: dict[str, list[float]] = field(default_factory=dict)
    decodes: dict[str, float] = field(default_factory=dict)  # per dataset image
    work: dict[str, dict[str, int]] = field(default_factory=dict)
    identical: bool = False

    def best(self, name: str) -> float:
        """The fastest timing of run ``name``."""
        return min(self.seconds[name])


def measure(model, dataset: CountingDataset, batch_size: int, repeat: int,
            extra: dict[str, Callable[[], None]] | None = None, **options: Any) -> Measured:
    """Fused pass, separate runs, a bare forward over the dataset (and ``extra`` timers),
    interleaved ``repeat`` times after a warm-up, so that load from other jobs hits all alike."""
    work = count_block_work(model)
    n = len(dataset)
    device, precision = options.get("device", "cpu"), options.get("precision")
    runs = {"fused": run_fused_pass, "separate": run_separately}
    got = Measured(images=n, seconds={name: [] for name in [*runs, "bare", *(extra or {})]})
    run_fused_pass(model, dataset, batch_size, **options)  # warm-up (allocator, caches)
    bare_forward_seconds(model, n, batch_size, device, precision)
    for _ in range(repeat):
        results = {}
        for name, run in runs.items():
            dataset.decoded, work["token_blocks"], work["head_tokens"] = 0, 0, 0
            seconds, results[name] = run(model, dataset, batch_size, **options)
            got.seconds[name].append(seconds)
            got.decodes[name], got.work[name] = dataset.decoded / n, dict(work)
        got.seconds["bare"].append(bare_forward_seconds(model, n, batch_size, device, precision))
        for name, timed in (extra or {}).items():
            started = time.perf_counter()
            timed()
            got.seconds[name].append(time.perf_counter() - started)
        got.identical = all(a.result.metrics == b.result.metrics for a, b in
                            zip(results["fused"], results["separate"], strict=True))
    return got


def print_comparison(got: Measured, model) -> None:
    """Decodes, transformer work, wall times and the speed-up of fused over separate."""
    fused, separate = got.work["fused"], got.work["separate"]
    print(f"images decoded per dataset image: fused {got.decodes['fused']:.2f}, "
          f"separate {got.decodes['separate']:.2f}")
    eq_fused = forward_equivalents(model, fused, got.images)
    eq_separate = forward_equivalents(model, separate, got.images)
    print(f"transformer work, in full forwards over the dataset: fused {eq_fused:.2f}, "
          f"separate {eq_separate:.2f} (ratio {eq_separate / eq_fused:.2f})")
    runs = ", ".join(f"{name} {' '.join(f'{t:.2f}' for t in got.seconds[name])}"
                     for name in ("fused", "separate"))
    print(f"wall time: fused {got.best('fused'):.2f} s, separate {got.best('separate'):.2f} s "
          f"(best of {len(got.seconds['fused'])}; all runs: {runs})")
    print(f"speed-up of the fused pass: {got.best('separate') / got.best('fused'):.2f}x")
    print(f"fused metrics identical to separate runs: {got.identical}")


def print_efficiency(got: Measured, model, batch_size: int, target: str) -> None:
    """The fused pass's wall time over the model-compute bound: its forward-equivalents
    times the bare forward over the dataset at the same batch size, timed in the same run."""
    equivalents = forward_equivalents(model, got.work["fused"], got.images)
    bare = got.best("bare")
    bound = equivalents * bare
    print(f"efficiency: fused pass {got.best('fused'):.2f} s = "
          f"{got.best('fused') / bound:.2f}x the model-compute bound ({equivalents:.2f} "
          f"forward-equivalents x {bare:.3f} s bare forward over the {got.images} images at "
          f"batch {batch_size} = {bound:.2f} s); {target}")


def add_pass_options(parser: argparse.ArgumentParser, batch_size: int = 64) -> None:
    """The options every fused-pass bench takes (batch, timing, device, workers, precision)."""
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--repeat", type=int, default=2, help="timed runs of each; best counts")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (1 gives steadier timings on a busy machine)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1...")
    parser.add_argument("--workers", type=int, default=0, help="decode worker processes")
    parser.add_argument("--precision", choices=["fp32", "tf32", "bf16"], default=None,
                        help="the forwards' arithmetic (run_fused's precision; default: its own)")


def setup(args: argparse.Namespace) -> dict[str, Any]:
    """Apply ``--threads``, seed torch; the pass options the parsed arguments ask for."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    return pass_options(args.device, args.workers, args.precision)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=None,
                        help="a subset of the val split (default: all 600 images)")
    add_pass_options(parser)
    args = parser.parse_args(argv)
    options = setup(args)
    import torch

    model = quickstart_vit().eval()
    dataset = synthetic_val(args.images)
    print(f"model: quickstart vit ({model.info.depth} blocks, {model.preprocess.size} px), "
          f"dataset: synthetic val, {len(dataset)} images, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads, device {args.device}, {args.workers} workers, "
          f"precision {args.precision or 'default'}")
    got = measure(model, dataset, args.batch_size, args.repeat, **options)
    print_comparison(got, model)
    target = (f"target <= {EFFICIENCY_TARGET}x on a CPU" if args.device == "cpu" else
              "on a GPU decode and transfers decide it")
    print_efficiency(got, model, args.batch_size, target)


def _synced(device: str, started: float) -> float:
    """Seconds since ``started`` once the device has finished its queued work."""
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def _device_of(model) -> Any:
    """The device the model's weights are on."""
    return next(model.parameters()).device


def _precision_scope(device: str, precision: str | None) -> Any:
    """The pass's precision context for the bare forward (nothing when none is asked for)."""
    import contextlib

    if precision is None:
        return contextlib.nullcontext()
    from runner.kinds.base import precision_scope

    return precision_scope(device, precision)


if __name__ == "__main__":
    main()
