"""map_boxes: planted features firing only inside or only outside the boxes land on the right
side of chance; on the synthetic world every number equals a brute-force recomputation (the
ranking among boxed images by hand, the measures by the numpy reference of the ops tests)."""

import copy
import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from eval_helpers import context as eval_context
from eval_helpers import synthetic_val, tiny_vit
from vis_helpers import GREEN, RED, MemoryDataset, artifacts, context, metrics, planted_vit

from runner.data.base import Batch
from runner.errors import PlanError
from runner.kinds.map_boxes import KIND
from runner.ops.pixels import model_batch, to_unit
from tests.helpers import RecordingSection
from tests.ops.test_ops_box_mass import reference_inside, reference_measures

HEIGHT, WIDTH = 48, 64  # native images larger than the 32-px input, and not square


class BoxedMemoryDataset(MemoryDataset):
    """In-memory images with boxes of their class (``None``: an image without boxes)."""

    def __init__(self, images, boxes) -> None:
        super().__init__(images)
        self.samples = [replace(s, boxes=tuple(b or ())) for s, b in zip(self.samples, boxes,
                                                                          strict=True)]

    def batches(self, batch_size, *, indices=None, workers=0, **_):
        for batch in super().batches(batch_size, indices=indices, workers=workers):
            yield Batch(batch.indices, batch.images, batch.labels,
                        [self.samples[i].boxes for i in batch.indices.tolist()], batch.skipped)


def red_object_on_green(box, seed: int) -> torch.Tensor:
    """A uint8 (3, HEIGHT, WIDTH) green field with a red rectangle exactly filling ``box``
    (inclusive pixel indices), plus a little noise."""
    g = torch.Generator().manual_seed(seed)
    image = torch.tensor([0.1, 0.75, 0.15]).view(3, 1, 1).repeat(1, HEIGHT, WIDTH)
    xmin, ymin, xmax, ymax = box
    image[:, ymin : ymax + 1, xmin : xmax + 1] = torch.tensor([0.85, 0.1, 0.1]).view(3, 1, 1)
    image += 0.05 * (torch.rand(image.shape, generator=g) * 2 - 1)
    return (image.clamp(0, 1) * 255).round().to(torch.uint8)


def planted_world(n: int = 10, unboxed: int = 2) -> BoxedMemoryDataset:
    """``n`` boxed images of a red object on green, then ``unboxed`` all-red images without
    boxes (they would top the red feature's ranking if they were not left out)."""
    rng = np.random.default_rng(0)
    images, boxes = [], []
    for i in range(n):
        w, h = int(rng.integers(22, 34)), int(rng.integers(20, 28))
        x0, y0 = int(rng.integers(10, WIDTH - 10 - w)), int(rng.integers(4, HEIGHT - 4 - h))
        box = (x0, y0, x0 + w - 1, y0 + h - 1)
        images.append(red_object_on_green(box, seed=i))
        boxes.append([box])
    red = torch.zeros(3, HEIGHT, WIDTH, dtype=torch.uint8)
    red[0] = 230
    return BoxedMemoryDataset(images + [red] * unboxed, boxes + [None] * unboxed)


def only_whole_patches(threshold: float = 2.8) -> torch.nn.Module:
    """The planted ViT with its red and green features shifted down by ``threshold``: they fire
    only on patches (nearly) wholly red or green (a whole red patch gives about 3.07), so a red
    object's feature fires only inside its box, the green field's only outside it."""
    model = copy.deepcopy(planted_vit())
    with torch.no_grad():
        model.net.blocks[0].mlp.fc1.bias[[RED, GREEN]] = -threshold
    return model


def read_npz(ctx, row) -> dict:
    data = (Path(ctx.sink.root) / row.path).read_bytes()
    with np.load(io.BytesIO(data)) as npz:
        return {k: npz[k] for k in npz.files}


def value(ctx, name, **dims) -> float:
    (row,) = metrics(ctx, name, **dims)
    return row.value


def measures(ctx, feature: int) -> dict:
    return {name: value(ctx, name, layer=0, feature=feature)
            for name in ("box_share", "pointing_hit", "chance")}


def test_planted_features_inside_and_outside_the_boxes(tmp_path):
    dataset, silent = planted_world(), 2  # block-0 feature 2 is GELU(0) = 0 everywhere
    params = KIND.Params(layers=[0], features=[RED, GREEN, silent], k=4)
    ctx = context(tmp_path, "map_boxes", params, only_whole_patches(), dataset, batch_size=5)
    KIND.run(ctx)

    inside, outside = measures(ctx, RED), measures(ctx, GREEN)
    assert inside["box_share"] > 0.9 and inside["pointing_hit"] > 0.9
    assert outside["box_share"] < 0.05 and outside["pointing_hit"] < 0.05
    for measured in (inside, outside):  # the red boxes' share of the input: in between
        assert 0.2 < measured["chance"] < 0.5
        assert outside["box_share"] < measured["chance"] < inside["box_share"]
    assert value(ctx, "n_images", layer=0, feature=RED) == 4
    assert not metrics(ctx, "box_share", feature=silent)  # no positive mass: left out
    assert ctx.result.info == {"no_boxes": 2, "maps_without_positive_mass": 4}
    (row,) = artifacts(ctx, "map_boxes")
    arrays = read_npz(ctx, row)
    assert arrays["features"].tolist() == [RED, GREEN, silent]
    assert arrays["indices"].max() < 10  # the all-red images without boxes were left out
    assert np.isnan(arrays["box_share"][2]).all()
    assert value(ctx, "box_share_mean", layer=0) == pytest.approx(
        (inside["box_share"] + outside["box_share"]) / 2)
    assert value(ctx, "n_features", layer=0) == 2
    assert value(ctx, "depth") == 2


def test_a_detector_straddling_the_box_edges_scores_between(tmp_path):
    """The plain planted red feature also fires on patches the box edge cuts: its share drops
    below the whole-patch detector's, yet stays far above chance."""
    params = KIND.Params(layers=[0], features=[RED], k=4)
    ctx = context(tmp_path, "map_boxes", params, planted_vit(), planted_world(), batch_size=5)
    KIND.run(ctx)
    red = measures(ctx, RED)
    assert red["chance"] + 0.3 < red["box_share"] < 0.9
    assert red["pointing_hit"] == 1.0


def test_metrics_equal_a_brute_force_recomputation():
    """Rank the boxed images by hand (hooked activations), measure each kept map with the numpy
    reference in the original image's pixels, and compare every stored number."""
    without = (0, 7, 13)
    model, dataset = tiny_vit(), synthetic_val(without_boxes=without)
    layers, features, k = [0, 2], [0, 3, 5, 8], 3
    ctx = eval_context("map_boxes", model, dataset, layers=layers, features=features, k=k)
    KIND.run(ctx)

    pre = model.preprocess
    boxed = [i for i in range(len(dataset)) if i not in without]
    images = [dataset.decode(i) for i in boxed]
    x = model_batch([to_unit(im) for im in images], pre.size, pre.crop_pct, pre.interpolation)
    for layer in layers:
        site = model.info.sites[f"block{layer}.mlp"]
        with torch.no_grad():
            acts = model.capture(x, [site.name])[site.name][:, site.prefix_tokens:].numpy()
        for feature in features:
            order = np.argsort(-acts[:, :, feature].mean(1), kind="stable")[:k]
            per_image = []
            for j in order:
                height, width = images[j].shape[-2:]
                inside = reference_inside(dataset.samples[boxed[j]].boxes, height, width,
                                          pre.size, pre.crop_pct, sub=32)  # exact: 35/32
                per_image.append(reference_measures(acts[j, :, feature].reshape(site.grid),
                                                    inside))
            expected = np.nanmean(np.array(per_image), axis=0)
            for name, want in zip(("box_share", "pointing_hit", "chance"), expected,
                                  strict=True):
                assert value(ctx, name, layer=layer, feature=feature) == pytest.approx(
                    want, abs=1e-6)
    assert ctx.result.info["no_boxes"] == len(without)


def test_no_image_with_boxes_is_a_clear_error(tmp_path):
    dataset = BoxedMemoryDataset(planted_world(n=0, unboxed=3).images, [None] * 3)
    ctx = context(tmp_path, "map_boxes", KIND.Params(layers=[0], features=[RED]),
                  planted_vit(), dataset)
    with pytest.raises(ValueError, match="bounding box"):
        KIND.run(ctx)


def test_declaration_and_plan_checks():
    assert KIND.fusable and KIND.needs_boxes
    info = planted_vit().info
    KIND.check(KIND.Params(layers=[0, 1], features=[0, 5]), info)
    with pytest.raises(PlanError, match="feature 500"):
        KIND.check(KIND.Params(features=[500]), info)
    with pytest.raises(ValueError):
        KIND.Params(k=0)


# --------------------------------------------------------------------------- report section


DEPTH = 4


def study(tmp_path: Path, models: dict[str, tuple[float, list[int]]]):
    """A StudyData of one map_boxes task per model: alias -> (box share in every layer but the
    last, the layers measured), 30 features per layer, chance 0.3, the last block at chance."""
    import json

    import pandas as pd

    from runner.results.study import StudyData, task_labels

    rng = np.random.default_rng(0)
    tasks, rows = [], []
    for i, (alias, (share, layers)) in enumerate(models.items()):
        key = f"key{i}"
        tasks.append({"key": key, "kind": "map_boxes", "model": alias, "dataset": "val",
                      "status": "done", "seed": 0, "info": json.dumps({"no_boxes": 3}),
                      "params": json.dumps({"k": 5, "layers": layers, "features": "all"})})
        rows.append((key, "depth", float(DEPTH), None, None))
        for layer in layers:
            mean = 0.3 if layer == DEPTH - 1 else share
            for feature in range(30):
                values = {"box_share": mean + rng.normal(0, 0.05),
                          "pointing_hit": mean + rng.normal(0, 0.05),
                          "chance": 0.3 + rng.normal(0, 0.05)}
                rows += [(key, name, v, layer, feature) for name, v in values.items()]
    frame = pd.DataFrame(tasks)
    metrics = pd.DataFrame(rows, columns=["task_key", "name", "value", "layer", "feature"])
    data = StudyData("s", frame, metrics.assign(variant=None), pd.DataFrame(), tmp_path,
                     model_names={"vit": "vit_base_patch16_384", "cnn": "resnet50"})
    data.labels = task_labels(frame)
    return data, metrics


def test_report_section_verdicts_from_intervals(tmp_path: Path) -> None:
    from runner.kinds.map_boxes.report import SECTION

    data, rows = study(tmp_path, {"vit": (0.7, [0, 1, 2, 3]), "cnn": (0.1, [0, 2, 3]),
                                  "flat": (0.3, [0, 1, 2, 3]), "shallow": (0.7, [0, 1])})
    section = RecordingSection("map_boxes", data)
    SECTION.build(section)
    notes = [n for n in section.notes if ": left out " not in n]
    assert len(notes) == 3 and notes[0].startswith("Paper (section 3, contribution II)")
    claim = notes[1]
    assert claim.startswith("Activation maps highlight the object")
    # vit holds although its last block sits at chance (the paper's exception); shallow has
    # no layer in the deeper half measured; flat is at chance
    assert "holds on vit;" in claim and "does not hold on cnn;" in claim
    assert "undecided on flat, shallow." in claim
    assert section.figures == ["map_boxes_by_layer"]
    (table,) = section.tables
    cells = table.cells
    cell = cells[(cells["group"] == "vit") & (cells["row"] == "layer 2")
                 & (cells["column"] == "box share (%)")].iloc[0]
    values = rows[(rows["task_key"] == "key0") & (rows["layer"] == 2)
                  & (rows["name"] == "box_share")]["value"]
    assert cell["value"] == pytest.approx(100 * values.mean())
    assert cell["ci_low"] < cell["value"] < cell["ci_high"]
    assert set(cells[cells["group"] == "vit"]["row"]) == {
        "layer 0", "layer 1", "layer 2", "layer 3 (last block)"}
    assert "vit: left out 3 images without boxes." in section.notes
