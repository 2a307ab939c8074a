"""The fused pass: fused results equal each task run alone, one decode per image, one forward
per distinct variant, variants derived as they define, and one task's failure (its evaluator,
its variant or its readout) kept to the tasks it concerns."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from eval_helpers import artifact, context, model_inputs, synthetic_val, tiny_vit

import runner.kinds.lowpass.run as lowpass_run
from runner.execute.fused import run_alone, run_fused
from runner.kinds import get_kind
from runner.kinds.evaluation import AccuracyEvaluator
from runner.kinds.fgbg.run import Masked
from runner.kinds.fusion import NATURAL, BatchInputs, Derived, Variant
from runner.kinds.lowpass.run import Filtered
from runner.models.readouts import LOGITS, TOKEN_LOGITS, IsolatedLogits
from runner.ops.frequency import frequency_filter
from runner.ops.masking import mask_region
from runner.results.correctness import Correctness

TASKS = {
    "fgbg": {"fill": "black"},
    "lowpass": {"radii": [2, 5, 64], "highpass": True},  # 64 px is past the 32-px corner
    "cls_isolation": {},
}
WITHOUT_BOXES = (3, 10)


def counting(dataset):
    """The dataset with a decode counter."""
    dataset.decoded = 0
    decode = dataset.decode

    def counted(index):
        dataset.decoded += 1
        return decode(index)

    dataset.decode = counted
    return dataset


def contexts(model, dataset, batch_size=8):
    return [context(kind, model, dataset, batch_size=batch_size, **params)
            for kind, params in TASKS.items()]


def artifacts_of(ctx):
    return {a.role: artifact(ctx, a.role) for a in ctx.result.artifacts}


def assert_same_artifacts(a, b):
    """Equal roles, and equal contents (bytes, arrays, or the arrays of an npz file: NaN
    equal to NaN, as the `x` column of a `correct` file holds NaN for no x)."""
    assert a.keys() == b.keys()
    for role, value in a.items():
        if isinstance(value, dict):
            assert value.keys() == b[role].keys()
            for name in value:
                np.testing.assert_array_equal(value[name], b[role][name], err_msg=role + name)
        elif isinstance(value, bytes):
            assert value == b[role], role
        else:
            np.testing.assert_array_equal(value, b[role], err_msg=role)


def test_fused_results_equal_each_task_alone_and_decode_once():
    model = tiny_vit()
    dataset = counting(synthetic_val(without_boxes=WITHOUT_BOXES))
    fused = contexts(model, dataset)
    evaluators = [get_kind(ctx.kind).evaluator(ctx) for ctx in fused]
    errors = run_fused(evaluators, model, dataset, batch_size=8, progress=fused[0].progress)
    assert errors == {ctx.key: None for ctx in fused}
    assert dataset.decoded == len(dataset)  # each image decoded once for all three tasks
    assert (fused[0].progress.done, fused[0].progress.total) == (len(dataset), len(dataset))

    dataset.decoded = 0
    alone = contexts(model, dataset)
    for ctx in alone:
        get_kind(ctx.kind).run(ctx)
    assert dataset.decoded == 3 * len(dataset)
    for f, a in zip(fused, alone, strict=True):
        assert f.result.metrics == a.result.metrics, f.kind
        assert f.result.info == a.result.info, f.kind
        assert_same_artifacts(artifacts_of(f), artifacts_of(a))
    assert fused[0].result.info == {"no_boxes": len(WITHOUT_BOXES)}


class Spy(AccuracyEvaluator):
    """Asks for given variants' readouts (the logits by default) and keeps what it got."""

    def __init__(self, key, variants, readouts=(LOGITS,)):
        ctx = context("fgbg", None, None)
        ctx.key = key
        super().__init__(ctx)
        self.variants, self.readouts = variants, set(readouts)
        self.got: list[tuple] = []
        self.finished = False

    def requests(self):
        return {variant: self.readouts for variant in self.variants}

    def update(self, variant, readouts, labels, indices):
        self.got.append((variant, readouts, labels, indices))

    def finish(self):
        self.finished = True


def forwards(monkeypatch, model) -> list[torch.Tensor]:
    """Every model input the pass embeds (one per forward), recorded as it happens."""
    seen = []
    parts = type(model.vit)
    embed = parts.embed
    monkeypatch.setattr(parts, "embed", lambda self, x: seen.append(x.clone()) or embed(self, x))
    return seen


def test_variants_are_derived_as_defined_and_forwards_are_shared(monkeypatch):
    model, dataset = tiny_vit(), synthetic_val(without_boxes=WITHOUT_BOXES)
    seen = forwards(monkeypatch, model)
    lowpass, past_corner = Filtered("lowpass", 3.0), Filtered("lowpass", 1000.0)
    fg, bg = Masked("fg", "black"), Masked("bg", "mean")
    a = Spy("a", [NATURAL, fg, lowpass])
    b = Spy("b", [NATURAL, bg, past_corner, lowpass, Masked("fg", "black")])
    assert run_fused([a, b], model, dataset, batch_size=len(dataset)) == {"a": None, "b": None}

    # one forward per distinct input: natural (= the low-pass past the corner), fg, bg, low-pass
    assert len(seen) == 4
    boxed = [i for i, s in enumerate(dataset.samples) if s.boxes]
    natural, labels = model_inputs(model, dataset)
    mean = torch.tensor(model.preprocess.mean)
    expected_fg, _ = model_inputs(model, dataset, lambda im, s: mask_region(
        im, s.boxes, "fg", torch.zeros(3)) if s.boxes else im)
    expected_bg, _ = model_inputs(model, dataset, lambda im, s: mask_region(
        im, s.boxes, "bg", mean) if s.boxes else im)
    assert torch.equal(seen[0], natural)
    assert torch.equal(seen[1], expected_fg[boxed]) and torch.equal(seen[2], expected_bg[boxed])
    assert torch.allclose(seen[3], frequency_filter(natural, "lowpass", 3), atol=1e-6)

    got_a = {v: (r, lab, idx) for v, r, lab, idx in a.got}
    got_b = {v: (r, lab, idx) for v, r, lab, idx in b.got}
    assert got_a[NATURAL][0][LOGITS] is got_b[NATURAL][0][LOGITS]  # shared, not recomputed
    assert got_b[past_corner][0][LOGITS] is got_b[NATURAL][0][LOGITS]
    assert got_a[lowpass][0][LOGITS] is got_b[lowpass][0][LOGITS]
    assert got_a[fg][0][LOGITS] is got_b[fg][0][LOGITS]  # equal variants of two tasks: one
    assert got_a[fg][2].tolist() == boxed and torch.equal(got_a[fg][1], labels[boxed])
    assert got_b[bg][2].tolist() == boxed
    assert got_a[NATURAL][2].tolist() == list(range(len(dataset)))
    assert a.finished and b.finished


def test_a_filters_transfer_function_is_built_once_per_pass(monkeypatch):
    model, dataset = tiny_vit(), synthetic_val()
    built = []
    filter_mask = lowpass_run.filter_mask
    monkeypatch.setattr(lowpass_run, "filter_mask",
                        lambda *args: built.append(args[:2]) or filter_mask(*args))
    spy = Spy("a", [Filtered("lowpass", 3.0), Filtered("highpass", 3.0)])
    assert run_fused([spy], model, dataset, batch_size=8) == {"a": None}
    assert len(spy.got) == 2 * 3  # two variants, three batches ...
    assert sorted(built) == [("highpass", 3.0), ("lowpass", 3.0)]  # ... one mask each


@dataclass(frozen=True)
class Inverted(Variant):
    """A variant no part of the pass knows by name: one minus the natural input."""

    name: str = "inverted"

    def derive(self, inputs: BatchInputs) -> Derived:
        return Derived(None, 1 - inputs.natural())


@dataclass(frozen=True)
class Underivable(Variant):
    """A variant whose derivation fails."""

    name: str = "underivable"

    def derive(self, inputs: BatchInputs) -> Derived:
        raise RuntimeError("cannot derive")


def test_any_variant_is_derived_and_a_failing_one_fails_only_its_tasks(monkeypatch):
    model, dataset = tiny_vit(), synthetic_val()
    seen = forwards(monkeypatch, model)
    a = Spy("a", [NATURAL, Inverted()])
    b = Spy("b", [Inverted(), Underivable()])
    c = Spy("c", [Underivable()])
    errors = run_fused([a, b, c], model, dataset, batch_size=len(dataset))
    assert errors["a"] is None and a.finished
    assert str(errors["b"]) == str(errors["c"]) == "cannot derive"
    assert not b.finished and not c.finished
    assert len(seen) == 2  # natural and inverted, each once
    natural, _ = model_inputs(model, dataset)
    assert torch.equal(seen[1], 1 - natural)
    with torch.no_grad():
        assert torch.equal(dict((v, r) for v, r, _, _ in a.got)[Inverted()][LOGITS],
                           model(1 - natural))


class Broken(Spy):
    def update(self, variant, readouts, labels, indices):
        raise RuntimeError("boom")


def test_a_failing_task_fails_alone():
    model, dataset = tiny_vit(), synthetic_val()
    ctx = context("lowpass", model, dataset, radii=[4])
    good = get_kind("lowpass").evaluator(ctx)
    broken = Broken("broken", [NATURAL])
    asks_nonsense = Spy("nonsense", [NATURAL], readouts=[LOGITS, "attention_rollout"])
    too_deep = Spy("too_deep", [NATURAL], readouts=[LOGITS, IsolatedLogits(99)])
    shallow = Spy("shallow", [NATURAL], readouts=[LOGITS, IsolatedLogits(1)])
    errors = run_fused([broken, good, asks_nonsense, too_deep, shallow], model, dataset,
                       batch_size=8)
    assert str(errors["broken"]) == "boom"
    assert "unknown readout 'attention_rollout'" in str(errors["nonsense"])
    assert "past the model's depth" in str(errors["too_deep"])
    assert errors[ctx.key] is None and errors["shallow"] is None and shallow.finished
    assert not broken.finished and not asks_nonsense.finished and not too_deep.finished
    assert all(readouts.keys() == {LOGITS, IsolatedLogits(1)} for _, readouts, _, _ in shallow.got)

    alone = context("lowpass", model, dataset, radii=[4])
    get_kind("lowpass").run(alone)
    assert ctx.result.metrics == alone.result.metrics
    with pytest.raises(RuntimeError, match="boom"):
        run_alone(Broken("x", [NATURAL]), context("lowpass", model, dataset))


def test_unreadable_images_are_skipped_and_counted():
    model, dataset = tiny_vit(), synthetic_val()
    unreadable = {*range(8), 9}  # the whole first batch, and one more
    decode = dataset.decode
    dataset.decode = lambda i: None if i in unreadable else decode(i)
    ctx = context("fgbg", model, dataset, batch_size=8)
    get_kind("fgbg").run(ctx)
    assert ctx.result.info == {"skipped": len(unreadable)}
    n = [m.value for m in ctx.result.metrics if m.name == "n_images"]
    assert n == [len(dataset) - len(unreadable)]
    index = Correctness.from_arrays(artifact(ctx, "correct")).index
    assert len(index) == n[0] and not unreadable & set(index.tolist())
    assert (ctx.progress.done, ctx.progress.total) == (len(dataset), len(dataset))


def test_a_broken_dataset_fails_every_task():
    model, dataset = tiny_vit(), synthetic_val()

    def broken(*args, **kwargs):
        raise OSError("disk gone")
        yield

    dataset.batches = broken
    errors = run_fused([Spy("a", [NATURAL]), Spy("b", [NATURAL])], model, dataset, batch_size=4)
    assert [str(e) for e in errors.values()] == ["disk gone", "disk gone"]


def test_token_readouts_need_a_vit():
    class NoTokens(torch.nn.Module):
        """A model without ViTParts (like a CNN)."""

        def __init__(self, model):
            super().__init__()
            self.inner, self.info = model, model.info

        preprocess = property(lambda self: self.inner.preprocess)
        vit = None

        def forward(self, x):
            return self.inner(x)

    model, dataset = tiny_vit(), synthetic_val()
    logits_only = Spy("logits", [NATURAL])
    patches = Spy("patches", [NATURAL], readouts=[TOKEN_LOGITS])
    errors = run_fused([logits_only, patches], NoTokens(model), dataset, batch_size=12)
    assert errors["logits"] is None and "ViTParts" in str(errors["patches"])
    first_batch = model_inputs(model, dataset)[0][:12]
    with torch.no_grad():
        assert torch.equal(logits_only.got[0][1][LOGITS], model(first_batch))


def test_variants_are_values():
    """Equal variants are equal and hash alike (so two tasks share them); masked variants are
    validated; the stages order natural < native-resolution < derived from the natural."""
    assert Masked("fg") == Masked("fg", "black") and hash(Masked("fg")) == hash(Masked("fg"))
    assert Masked("fg") != Masked("fg", "mean") and Masked("fg") != Masked("bg")
    assert Filtered("lowpass", 4.0) == Filtered("lowpass", 4)
    for bad in (dict(name="fg", fill="grey"), dict(name="lowpass"), dict(name="natural")):
        with pytest.raises(ValueError):
            Masked(**bad)
    assert NATURAL.stage < Masked("fg").stage < Filtered("lowpass", 4.0).stage
    preprocess = tiny_vit().preprocess  # 32 px: the spectrum's corner is at 22.6
    assert Filtered("lowpass", 23.0).canonical(preprocess) is NATURAL
    assert Filtered("lowpass", 22.0).canonical(preprocess) == Filtered("lowpass", 22.0)
    assert Filtered("highpass", 1000.0).canonical(preprocess) == Filtered("highpass", 1000.0)
