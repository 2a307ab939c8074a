"""fgbg against masks made by hand at native resolution, then resized like the model's input."""

import pytest
import torch
from eval_helpers import accuracy, artifact, context, metric, model_inputs, synthetic_val, tiny_vit

from runner.kinds.fgbg import KIND
from runner.results.correctness import Correctness

WITHOUT_BOXES = (0, 7)


def hand_masked(region: str, fill: torch.Tensor):
    """Keep (fg) or blank (bg) the box pixels, rows ymin..ymax and columns xmin..xmax."""
    def transform(image: torch.Tensor, sample) -> torch.Tensor:
        inside = torch.zeros(image.shape[-2:], dtype=torch.bool)
        for xmin, ymin, xmax, ymax in sample.boxes:
            inside[ymin : ymax + 1, xmin : xmax + 1] = True
        keep = inside if region == "fg" else ~inside
        return torch.where(keep, image, fill.view(3, 1, 1))
    return transform


@pytest.mark.parametrize("fill", ["black", "mean"])
def test_fgbg_matches_hand_masking(fill):
    model, dataset = tiny_vit(), synthetic_val(without_boxes=WITHOUT_BOXES)
    ctx = context("fgbg", model, dataset, fill=fill)
    KIND.run(ctx)

    boxed = [i for i, s in enumerate(dataset.samples) if s.boxes]
    assert len(boxed) == len(dataset) - len(WITHOUT_BOXES)
    colour = torch.zeros(3) if fill == "black" else torch.tensor(model.preprocess.mean)
    x, labels = model_inputs(model, dataset)
    with torch.no_grad():
        expected = {"full": model(x[boxed])}
        for region in ("fg", "bg"):
            masked, _ = model_inputs(model, dataset, hand_masked(region, colour))
            expected[region] = model(masked[boxed])
    for variant, logits in expected.items():
        for k in (1, 5):
            assert metric(ctx, f"top{k}", variant=variant) == accuracy(logits, labels[boxed], k)
    full5 = metric(ctx, "top5", variant="full")
    for region in ("fg", "bg"):
        assert metric(ctx, "top5_norm", variant=region) == pytest.approx(
            100 * metric(ctx, "top5", variant=region) / full5)
    assert metric(ctx, "n_images") == len(boxed)
    assert ctx.result.info == {"no_boxes": len(WITHOUT_BOXES)}

    correct = Correctness.from_arrays(artifact(ctx, "correct"))
    assert correct.index.tolist() == boxed
    assert {(key.variant, key.k, key.x) for key in correct.hits} == {
        (variant, k, None) for variant in ("full", "fg", "bg") for k in (1, 5)}
    for variant in ("full", "fg", "bg"):
        assert correct.hits[correct.find(variant, 5)].shape == (len(boxed),)
        for k in (1, 5):
            hits = correct.hits[correct.find(variant, k)]
            assert 100 * hits.mean() == metric(ctx, f"top{k}", variant=variant)


def test_masking_changes_the_predictions():
    """A sanity check that the variants really differ from the full image (not a no-op)."""
    model, dataset = tiny_vit(), synthetic_val()
    x, _ = model_inputs(model, dataset)
    fg, _ = model_inputs(model, dataset, hand_masked("fg", torch.zeros(3)))
    with torch.no_grad():
        assert (model(x) - model(fg)).abs().max() > 1e-3


def test_fgbg_without_any_box_fails_with_a_clear_error():
    dataset = synthetic_val(without_boxes=tuple(range(24)))
    ctx = context("fgbg", tiny_vit(), dataset)
    with pytest.raises(ValueError, match="bounding box"):
        KIND.run(ctx)
    assert ctx.result.info["no_boxes"] == 24


def test_fgbg_params():
    assert KIND.Params().fill == "black"
    with pytest.raises(ValueError):
        KIND.Params(fill="grey")
    assert KIND.fusable
