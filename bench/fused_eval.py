"""Fused vs separate evaluation: fgbg + lowpass (7 radii) + cls_isolation on the synthetic world.

Builds the quickstart ViT's architecture untrained (timing does not depend on weights), runs the
three tasks once in one fused pass and once as three separate runs, checks that both give the
same results, and prints images decoded per dataset image and the wall-time ratio.
Run: ``python bench/fused_eval.py [--batch-size 64] [--repeat 2] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_models import quickstart_vit  # noqa: E402

from runner.kinds.base import TaskContext  # noqa: E402
from runner.store import MemorySink  # noqa: E402

KINDS = {"fgbg": {}, "lowpass": {"radii": [2, 4, 8, 16, 32, 64, 112]}, "cls_isolation": {}}



def synthetic_val():
    """The synthetic world's validation split (generated on first use), counting decodes."""
    from runner.data.synthetic import open_synthetic
    from runner.schema import SyntheticDataset

    dataset = open_synthetic("shapes_val", SyntheticDataset(kind="synthetic", split="val"))
    dataset.decoded = 0
    decode = dataset.decode

    def counting_decode(index: int):
        dataset.decoded += 1
        return decode(index)

    dataset.decode = counting_decode
    return dataset


def count_block_work(model) -> dict[str, int]:
    """Counts token-block evaluations (tokens x blocks run), a noise-free measure of the work."""
    parts = model.vit
    run_blocks = parts.run_blocks
    counter = {"token_blocks": 0}

    def counted(tokens, start: int, end: int):
        counter["token_blocks"] += tokens.shape[0] * tokens.shape[1] * (end - start)
        return run_blocks(tokens, start, end)

    parts.run_blocks = counted
    return counter


def contexts(model, dataset, batch_size: int) -> list[TaskContext]:
    """One task context per kind, with the executor's evaluation pass (``run_pass``)."""
    from runner.execute.fused import pass_runner
    from runner.kinds import get_kind

    ctxs = []
    for name, params in KINDS.items():
        ctx = TaskContext(key=name, kind=name, params=get_kind(name).Params(**params), seed=0,
                          sink=MemorySink(), batch_size=batch_size, model_name="quickstart vit",
                          load_model=lambda: model, load_dataset=lambda: dataset,
                          log=lambda _: None)
        ctx.run_pass = pass_runner(ctx)
        ctxs.append(ctx)
    return ctxs


def run_fused_pass(model, dataset, batch_size: int) -> tuple[float, list[TaskContext]]:
    from runner.execute.fused import run_fused
    from runner.kinds import get_kind

    ctxs = contexts(model, dataset, batch_size)
    started = time.perf_counter()
    evaluators = [get_kind(ctx.kind).evaluator(ctx) for ctx in ctxs]
    errors = run_fused(evaluators, model, dataset, batch_size=batch_size)
    seconds = time.perf_counter() - started
    failed = {key: error for key, error in errors.items() if error is not None}
    if failed:
        raise RuntimeError(f"fused pass failed: {failed}")
    return seconds, ctxs


def run_separately(model, dataset, batch_size: int) -> tuple[float, list[TaskContext]]:
    from runner.kinds import get_kind

    ctxs = contexts(model, dataset, batch_size)
    started = time.perf_counter()
    for ctx in ctxs:
        get_kind(ctx.kind).run(ctx)
    return time.perf_counter() - started, ctxs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=2, help="timed runs of each; best counts")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (1 gives steadier timings on a busy machine)")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = quickstart_vit().eval()
    dataset = synthetic_val()
    n = len(dataset)
    print(f"model: quickstart vit ({model.info.depth} blocks, {model.preprocess.size} px), "
          f"dataset: synthetic val, {n} images, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads")
    work = count_block_work(model)
    run_fused_pass(model, dataset, args.batch_size)  # warm-up (allocator, caches)
    fused_times, separate_times = [], []
    for _ in range(args.repeat):
        dataset.decoded, work["token_blocks"] = 0, 0
        seconds, fused = run_fused_pass(model, dataset, args.batch_size)
        fused_decodes, fused_work = dataset.decoded / n, work["token_blocks"]
        fused_times.append(seconds)
        dataset.decoded, work["token_blocks"] = 0, 0
        seconds, separate = run_separately(model, dataset, args.batch_size)
        separate_decodes, separate_work = dataset.decoded / n, work["token_blocks"]
        separate_times.append(seconds)
    same = all(a.result.metrics == b.result.metrics for a, b in zip(fused, separate, strict=True))
    best_fused, best_separate = min(fused_times), min(separate_times)
    print(f"images decoded per dataset image: fused {fused_decodes:.2f}, "
          f"separate {separate_decodes:.2f}")
    size = model.preprocess.size
    with torch.inference_mode():
        tokens_per_image = model.vit.embed(torch.zeros(1, 3, size, size)).shape[1]
    per_forward = n * tokens_per_image * model.vit.depth  # one plain forward over the dataset
    print(f"transformer work, in full forwards over the dataset: fused "
          f"{fused_work / per_forward:.2f}, separate {separate_work / per_forward:.2f} "
          f"(ratio {separate_work / fused_work:.2f})")
    print(f"wall time: fused {best_fused:.2f} s, separate {best_separate:.2f} s "
          f"(best of {args.repeat}; all runs: fused "
          f"{', '.join(f'{t:.1f}' for t in fused_times)}, separate "
          f"{', '.join(f'{t:.1f}' for t in separate_times)})")
    print(f"speed-up of the fused pass: {best_separate / best_fused:.2f}x")
    print(f"fused metrics identical to separate runs: {same}")


if __name__ == "__main__":
    main()
