"""Fused vs separate evaluation where decoding dominates: ImageNet-sized JPEGs, a tiny model.

The synthetic world rendered at 500x375 and saved as JPEG (quality 90) in ImageNet layout
(class folders, a folder of VOC box files), generated once into the vitstudy cache; a 2-block
ViT at 64 px (untrained: timing does not depend on weights), so that decoding a batch costs
more than a forward of the model on it, as beside a GPU. fgbg + lowpass (7 radii) + cls_isolation
run in one fused pass and as three separate runs; printed: images decoded per dataset image,
wall times and their ratio (target on a CPU: fused at least 2.5x), images per second against
the decode-only rate of the same workers, and the fused pass's efficiency (``fused_eval.py``).
Run: ``python bench/decode_bound.py [--images 300] [--workers 0] [--device cpu] [--repeat 2]
[--precision bf16] [--model vit_base] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from fused_eval import (  # noqa: E402
    CountingDataset,
    add_pass_options,
    counting,
    forward_equivalents,
    measure,
    print_comparison,
    print_efficiency,
    setup,
)

#: The JPEG world: ImageNet's typical landscape size, its usual JPEG quality, the quickstart's
#: world params (``studies/quickstart.yaml``). Bump ``version`` when the files change.
WORLD = {"width": 500, "height": 375, "quality": 90, "seed": 0, "home_prob": 0.7,
         "colour_prob": 0.9, "version": 1}
#: Speed-up of the fused pass this bench should show on a CPU.
SPEEDUP_TARGET = 2.5


def jpeg_world(images: int, cache: str | None = None) -> Path:
    """The JPEG world's folder with ``images`` images, generated on first use into
    ``<vitstudy cache>/bench/decode_bound-<params id>`` (written aside, then renamed)."""
    from runner.data.cache import cache_root

    params = json.dumps({**WORLD, "images": images}, sort_keys=True)
    digest = hashlib.sha256(params.encode()).hexdigest()[:12]
    final = cache_root(cache) / "bench" / f"decode_bound-{digest}"
    if (final / "world.json").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    try:
        write_jpeg_world(temp, images)
        (temp / "world.json").write_text(params)
        try:
            os.rename(temp, final)
        except OSError:
            if not (final / "world.json").is_file():  # not a race lost to a complete copy
                raise
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return final


def write_jpeg_world(dest: Path, images: int) -> None:
    """``images`` JPEGs, classes in turn: ``val/<class>/<stem>.JPEG``, their boxes as
    ``val_boxes/<stem>.xml`` (ImageNet's val layout) and ``classes.txt``; rendered by one
    process per core."""
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    from runner.data.synthetic_render import SHAPES

    (dest / "val_boxes").mkdir(parents=True)
    for cls in SHAPES:
        (dest / "val" / cls).mkdir(parents=True)
    (dest / "classes.txt").write_text("".join(f"{c}\n" for c in SHAPES))
    with ProcessPoolExecutor(max_workers=min(os.cpu_count() or 1, 16)) as pool:
        list(pool.map(partial(write_jpeg, dest), range(images), chunksize=8))


def write_jpeg(dest: Path, k: int) -> None:
    """Image ``k`` of the JPEG world (class ``k mod 10``) and its box file."""
    from PIL import Image

    from runner.data.boxes import voc_annotation
    from runner.data.synthetic_render import SHAPES

    class_index, i = k % len(SHAPES), k // len(SHAPES)
    cls, stem = SHAPES[class_index], f"{SHAPES[class_index]}_{i:05d}"
    pixels, box = render_landscape(class_index, i)
    Image.fromarray(pixels).save(dest / "val" / cls / f"{stem}.JPEG", quality=WORLD["quality"])
    objects = [(cls, box)] if box is not None else []
    xml = voc_annotation(f"{stem}.JPEG", WORLD["width"], WORLD["height"], objects, cls)
    (dest / "val_boxes" / f"{stem}.xml").write_text(xml)


def render_landscape(class_index: int, index: int) -> tuple:
    """One world image rendered square at the world's width, its middle rows kept: (uint8
    (height, width, 3) pixels, the tight box of the shape's visible mask, or None)."""
    import numpy as np

    from runner.data.synthetic_render import render_image

    width, height = WORLD["width"], WORLD["height"]
    rendered = render_image(WORLD["seed"], "val", class_index, index, size=width,
                            home_prob=WORLD["home_prob"], colour_prob=WORLD["colour_prob"])
    top = (width - height) // 2
    mask = rendered.mask[top:top + height]
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    box = (int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])) if rows.size else None
    return np.ascontiguousarray(rendered.image[top:top + height]), box


def open_world(images: int, cache: str | None = None) -> CountingDataset:
    """The JPEG world as an ImageNet-layout dataset (read by the project's folder reader)."""
    from runner.data.folder import FolderPaths, read_folder

    world = jpeg_world(images, cache)
    paths = FolderPaths(world / "val", boxes=world / "val_boxes", classes=world / "classes.txt")
    return counting(read_folder("decode_bound", paths))


def build_model(name: str, size: int):
    """``tiny``: a 2-block ViT (width 96, 8-px patches) at ``size`` px, ImageNet's crop
    (0.875); ``vit_base``: timm's ViT-B/16 at 224 px. Both random-init, eval mode."""
    from runner.models import build_untrained
    from runner.schema import ModelSpec

    if name == "vit_base":
        from bench_models import vit_base

        return vit_base().eval()
    spec = ModelSpec(source="timm", name="vit_tiny_patch16_224", pretrained=False,
                     kwargs={"img_size": size, "patch_size": 8, "depth": 2, "embed_dim": 96,
                             "num_heads": 3, "num_classes": 10},
                     preprocess={"crop_pct": 0.875})
    return build_untrained(spec).eval()


def decode_only(dataset: CountingDataset, batch_size: int, workers: int):
    """A pass over the dataset's batches that does nothing with them (the decode rate)."""
    def run() -> None:
        for _ in dataset.batches(batch_size, workers=workers):
            pass

    return run


def print_rates(got, workers: int) -> None:
    """Images per second of fused and separate against the decode-only rate."""
    n = got.images
    decode = n / got.best("decode only")
    fused, separate = n / got.best("fused"), n / got.best("separate")
    print(f"images/s: fused {fused:.1f}, separate {separate:.1f} (dataset images), decode "
          f"only {decode:.1f} with the same {workers} workers: the fused pass runs at "
          f"{fused / decode:.0%} of the decode-only rate, separate runs at "
          f"{separate / decode:.0%}")


def print_breakdown(got, model) -> None:
    """Where the fused pass's time goes when it decodes in its own process (no workers): the
    decode-only pass, the model-compute bound, and the rest (best times of separate runs, so
    the split is approximate); then the speed-up with the model's compute taken out of both."""
    fused, decode = got.best("fused"), got.best("decode only")
    compute = forward_equivalents(model, got.work["fused"], got.images) * got.best("bare")
    rest = fused - decode - compute
    print(f"fused pass {fused:.2f} s ~ decode {decode:.2f} s ({decode / fused:.0%}) + model "
          f"compute {compute:.2f} s ({compute / fused:.0%}) + the rest {rest:.2f} s "
          f"({rest / fused:.0%}: inputs derived at native resolution - to float, box masks, "
          "resizes - low-pass filters, evaluators)")
    separate = got.best("separate")
    compute_separate = forward_equivalents(model, got.work["separate"], got.images) * got.best(
        "bare")
    data_fused, data_separate = fused - compute, separate - compute_separate
    print(f"without the model's compute: separate {data_separate:.2f} s / fused "
          f"{data_fused:.2f} s = {data_separate / data_fused:.2f}x, the speed-up a model of no "
          "cost would show on this machine (decoding shared 3 ways, the masked inputs' "
          "resizes not shared)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300, help="JPEGs in the world")
    parser.add_argument("--model", choices=["tiny", "vit_base"], default="tiny")
    parser.add_argument("--size", type=int, default=64, help="tiny model's input size (px)")
    parser.add_argument("--cache", default=None, help="cache folder (default: vitstudy's)")
    add_pass_options(parser)
    args = parser.parse_args(argv)
    options = setup(args)
    import torch

    dataset = open_world(args.images, args.cache)
    model = build_model(args.model, args.size)
    print(f"model: {args.model} ({model.info.depth} blocks, {model.preprocess.size} px), "
          f"dataset: {len(dataset)} JPEGs {WORLD['width']}x{WORLD['height']} with VOC boxes, "
          f"batch {args.batch_size}, {torch.get_num_threads()} threads, device {args.device}, "
          f"{args.workers} workers, precision {args.precision or 'default'}")
    extra = {"decode only": decode_only(dataset, args.batch_size, args.workers)}
    got = measure(model, dataset, args.batch_size, args.repeat, extra, **options)
    print_comparison(got, model)
    speedup = got.best("separate") / got.best("fused")
    on_cpu = args.device == "cpu"
    print(f"decode-bound speed-up: {speedup:.2f}x"
          + (f" (target on a CPU: >= {SPEEDUP_TARGET}x: "
             f"{'met' if speedup >= SPEEDUP_TARGET else 'not met'})" if on_cpu else ""))
    print_rates(got, args.workers)
    if args.workers == 0:
        print_breakdown(got, model)
    print_efficiency(got, model, args.batch_size,
                     "in a decode-bound world the data path, not the model, decides it")


if __name__ == "__main__":
    main()
