"""The GPU data path, as far as a CPU can check it: pinned memory asked only for CUDA, the
prefetch depth handed to the decode workers, ``--batch-size auto`` as a rule of free memory
and per-image bytes (64 off a GPU), and the run options' parsing."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from eval_helpers import synthetic_val, tiny_vit

from runner.cli import main
from runner.data.base import pack_images
from runner.execute.fused import loader_options, pins_memory, run_fused
from runner.execute.provenance import (
    AUTO_BATCH_CAP,
    AUTO_BATCH_CPU,
    auto_batch_size,
    probe_image_bytes,
    resolve_batch_size,
)
from tests.helpers import TINY_STUDY, write_study

MB = 2**20


def test_pinned_memory_and_prefetch_are_asked_only_where_they_act():
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 1)
    assert not pins_memory(cpu) and not pins_memory(torch.device("mps")) and pins_memory(cuda)
    assert loader_options(cpu, 0, 2) == {"workers": 0}  # a plain decode, as before
    assert loader_options(cpu, 4, 3) == {"workers": 4, "prefetch": 3}
    assert loader_options(cuda, 8, 2) == {"workers": 8, "prefetch": 2, "pin_memory": True}
    assert loader_options(cuda, 0, 2) == {"workers": 0, "pin_memory": True}


def test_the_fused_pass_hands_the_dataset_its_loader_options():
    dataset, asked = synthetic_val(), []
    batches = dataset.batches

    def spy(batch_size, **options):
        asked.append(options)
        return batches(batch_size, **options)

    dataset.batches = spy
    assert run_fused([], tiny_vit(), dataset, batch_size=8, workers=0, prefetch=4) == {}
    assert asked == [{"workers": 0}]  # on a CPU: no pinning, and no prefetch without workers


def test_decode_workers_with_a_prefetch_depth_give_the_batches_in_order():
    dataset = synthetic_val()
    plain = list(dataset.batches(5))
    prefetched = list(dataset.batches(5, workers=2, prefetch=3))
    assert [b.indices.tolist() for b in prefetched] == [b.indices.tolist() for b in plain]
    assert all(torch.equal(a, b) for x, y in zip(plain, prefetched, strict=True)
               for a, b in zip(x.images, y.images, strict=True))


def test_a_worker_batch_crosses_as_one_buffer():
    """A batch decoded in a worker arrives with its images as views of one buffer (one
    shared-memory block, one pinning copy), equal to the images decoded in this process."""
    dataset = synthetic_val()
    alone = next(dataset.batches(6)).images
    crossed = next(dataset.batches(6, workers=1)).images
    assert len({image.untyped_storage().data_ptr() for image in crossed}) == 1
    assert len({image.untyped_storage().data_ptr() for image in alone}) == 6
    assert all(torch.equal(a, b) for a, b in zip(alone, crossed, strict=True))


def test_pack_images_keeps_order_shapes_and_values():
    gen = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=gen)
              for h, w in [(5, 7), (7, 5), (4, 4)]]
    images.append(images[0].transpose(1, 2))  # a non-contiguous one
    packed = pack_images(images)
    assert [p.shape for p in packed] == [im.shape for im in images]
    assert all(torch.equal(p, im) for p, im in zip(packed, images, strict=True))
    assert len({p.untyped_storage().data_ptr() for p in packed}) == 1
    assert pack_images(packed) == packed  # already packed: left as it is


@pytest.mark.skipif(not torch.cuda.is_available(), reason="page-locked memory needs CUDA")
def test_a_batch_pins_its_tensors():
    batch = next(synthetic_val().batches(4, pin_memory=True))
    assert batch.labels.is_pinned() and all(image.is_pinned() for image in batch.images)
    crossed = next(synthetic_val().batches(4, pin_memory=True, workers=1))
    assert all(image.is_pinned() for image in crossed.images)
    assert len({image.untyped_storage().data_ptr() for image in crossed.images}) == 1


@pytest.mark.parametrize(("free", "per_image", "expected"), [
    (80_000 * MB, 40 * MB, 512),  # an H100 and a small model: the cap
    (8_000 * MB, 40 * MB, 96),  # half of 8 GB is 100 images: down to a multiple of 8
    (1_000 * MB, 200 * MB, 2),  # fewer than 8: as they fit
    (100 * MB, 300 * MB, 1),  # not even one fits: one (the run reports the OOM)
    (1_000 * MB, 0.0, AUTO_BATCH_CAP),  # a probe that saw nothing
])
def test_auto_batch_size_fills_half_the_free_memory_up_to_the_cap(free, per_image, expected):
    assert auto_batch_size(free, per_image) == expected


def test_auto_batch_size_means_64_off_a_gpu_and_never_probes_there():
    def probe() -> float:
        raise AssertionError("no probe off a GPU")

    assert resolve_batch_size("auto", "cpu", probe) == AUTO_BATCH_CPU == 64
    assert resolve_batch_size("auto", "mps", probe) == 64
    assert resolve_batch_size(32, "cuda", probe) == 32  # as given, on any device


class _FakeCuda:
    """torch.cuda's memory calls as a GPU with ``free`` bytes would answer them; each probe
    forward peaks at ``base + per_image * n`` for its batch of ``n`` (the sizes asked)."""

    def __init__(self, free: int, per_image: int, base: int = 300 * MB) -> None:
        self.free, self.per_image, self.base, self.sizes = free, per_image, base, iter((4, 8))

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in ("synchronize", "reset_peak_memory_stats", "empty_cache"):
            monkeypatch.setattr(torch.cuda, name, lambda *a: None)
        monkeypatch.setattr(torch.cuda, "memory_allocated", lambda *a: 0)
        monkeypatch.setattr(torch.cuda, "memory_reserved", lambda *a: 0)
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (self.free, 2 * self.free))
        monkeypatch.setattr(torch.cuda, "max_memory_allocated",
                            lambda *a: self.base + self.per_image * next(self.sizes))


def test_the_probe_measures_one_images_cost_by_two_forwards_and_restores_the_model(monkeypatch):
    _FakeCuda(8_000 * MB, 40 * MB).install(monkeypatch)
    model = tiny_vit()
    model.net.train()  # e.g. a model about to be trained: left as it was found
    per_image = probe_image_bytes(model, "cpu", "bf16")  # the forward and its gradient run
    left_training = model.net.training
    model.net.eval()  # the shared test model, as the other tests expect it
    assert per_image == 40 * MB and left_training
    choose = resolve_batch_size("auto", "cuda", lambda: per_image)
    assert choose == 96  # half of 8 GB at 40 MB an image: 100, down to a multiple of 8


@pytest.mark.parametrize(("args", "message"), [
    (["--batch-size", "0"], "0 is not in the range x>=1"),
    (["--batch-size", "many"], "'many' is not a valid integer"),
    (["--prefetch", "0"], "0 is not in the range x>=1"),
    (["--precision", "fp16"], "'fp16' is not one of 'fp32', 'tf32', 'bf16'"),
])
def test_run_options_are_checked_before_anything_runs(tmp_path, args, message):
    study = write_study(tmp_path, TINY_STUDY)
    result = CliRunner().invoke(main, ["run", str(study), *args])
    assert result.exit_code == 2 and message in result.output, result.output


def test_batch_size_auto_is_accepted_in_any_case(tmp_path):
    study = write_study(tmp_path, TINY_STUDY)
    where = ["--db", f"sqlite:///{tmp_path / 'r.db'}", "--artifacts", str(tmp_path / "a")]
    for value in ("auto", "AUTO"):  # parsed, then the run stops at the (wrong) device
        result = CliRunner().invoke(main, [*where, "run", str(study), "--batch-size", value,
                                           "--device", "nonsense"])
        assert result.exit_code == 2 and "--device" in result.output, result.output
