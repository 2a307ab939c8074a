"""``--precision fp32|tf32|bf16``: fp32 keeps today's keys and results, tf32 and bf16 are part
of the keys of the tasks that run forwards, the forwards (only) run at the precision, and bf16
agrees with fp32 on a trained model, end to end through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from eval_helpers import context, synthetic_val, tiny_vit

from runner import db
from runner.cli import main
from runner.execute.fused import run_fused
from runner.kinds.base import precision_scope
from runner.kinds.fusion import NATURAL
from runner.models.readouts import LOGITS, Activations
from runner.plan import make_plan, task_key
from runner.results.correctness import Correctness
from runner.spec import load_study
from runner.store import Store
from tests.helpers import TINY_EVALUATIONS, write_study

#: The keys of TINY_EVALUATIONS' tasks as main computed them before ``--precision`` existed
#: (commit 69954af): an fp32 plan must keep them byte for byte, or every cached result reruns.
TODAYS_KEYS = {
    "train": "0acd367693b5e49635f2edd696471e66588af516d55acf1b33437d26aa300b86",
    "lowpass": "308afacc0b4a95725b1a2eaf92cb7779ff21abbdf1f1a8b480248fb10ee36aa3",
    "fgbg": "b28425c33ea4c22d2517bbdf41ced3b222ff014dc85f478fa9df656f08363e7d",
    "cls_isolation": "7c74d915460be1583ffe4a0c6a6df79f1e696f122508fc2c1907328031a45cc5",
}
LEGACY_PARTS = {"kind", "kind_version", "params", "model_id", "dataset_id", "upstream", "seed"}


def keys(plan) -> dict[str, str]:
    return {t.kind: t.key for t in plan.tasks}


def test_fp32_keys_are_todays_and_tf32_bf16_key_only_the_forward_running_tasks(tmp_path: Path):
    loaded = load_study(write_study(tmp_path, TINY_EVALUATIONS))
    fp32 = make_plan(loaded)
    assert keys(fp32) == TODAYS_KEYS == keys(make_plan(loaded, "fp32"))
    for t in fp32.tasks:
        assert set(t.key_parts) == LEGACY_PARTS and t.key == task_key(t.key_parts)
    tf32, bf16 = make_plan(loaded, "tf32"), make_plan(loaded, "bf16")
    assert bf16.precision == "bf16"
    for other, name in ((tf32, "tf32"), (bf16, "bf16")):
        for t in other.tasks:
            if t.kind == "train":  # training runs in fp32: its weights, and key, are shared
                assert t.key == TODAYS_KEYS["train"] and "precision" not in t.key_parts
            else:
                assert t.key_parts["precision"] == name and t.key == task_key(t.key_parts)
                assert t.key != TODAYS_KEYS[t.kind]
    shared = set(keys(tf32).values()) & set(keys(bf16).values())
    assert shared == {TODAYS_KEYS["train"]}  # tf32 and bf16 results are apart too
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        make_plan(loaded, "fp16")


def test_precision_scope_changes_only_what_it_names():
    linear, x = torch.nn.Linear(4, 3), torch.randn(2, 4)
    with precision_scope("cpu", "fp32"):
        assert not torch.is_autocast_enabled("cpu") and linear(x).dtype == torch.float32
    with precision_scope("cpu", "bf16"):
        assert linear(x).dtype == torch.bfloat16
    assert not torch.is_autocast_enabled("cpu")
    flags = torch.backends.cuda.matmul, torch.backends.cudnn
    before = [f.allow_tf32 for f in flags]
    with precision_scope("cpu", "tf32"):
        assert all(f.allow_tf32 for f in flags)
    assert [f.allow_tf32 for f in flags] == before  # restored: fp32 tasks after stay fp32
    with pytest.raises(ValueError, match="unknown precision"), precision_scope("cpu", "half"):
        pass


class _Spy:
    """An evaluator that keeps every readout it is handed."""

    key = "spy"

    def __init__(self) -> None:
        self.seen: list[dict] = []

    def requests(self):
        return {NATURAL: [LOGITS, Activations("block1.mlp")]}

    def update(self, variant, readouts, labels, indices) -> None:
        self.seen.append(dict(readouts))

    def batch_done(self, batch) -> None:
        pass

    def finish(self) -> None:
        pass


def test_a_tasks_precision_reaches_its_forwards_and_evaluators_see_float32():
    model, dataset = tiny_vit(), synthetic_val()
    seen = {}
    for precision in ("fp32", "bf16"):
        ctx, spy = context("lowpass", model, dataset), _Spy()
        ctx.precision = precision
        ctx.evaluate(spy)  # the task's own pass (run_alone) with the context's settings
        seen[precision] = {r: torch.cat([batch[r] for batch in spy.seen]) for r in spy.seen[0]}
    for readout, value in seen["bf16"].items():
        assert value.dtype == torch.float32  # cast back before top-k and accuracies
        reference = seen["fp32"][readout]
        assert not torch.equal(value, reference)  # the forward did run in bfloat16
        torch.testing.assert_close(value, reference, atol=0.1, rtol=0.05)
    assert run_fused([_Spy()], model, dataset, batch_size=8, precision="tf32") == {"spy": None}


# ------------------------------------------------------------------ end to end, via the CLI

#: TINY_EVALUATIONS trained long enough to be right (about 84% on 4 classes) and evaluated on
#: 800 images: a weak model's logits are near ties, where bf16's 8-bit mantissa flips argmaxes.
AGREEMENT_STUDY = (
    TINY_EVALUATIONS
    .replace("train_per_class: 24", "train_per_class: 100")
    .replace("    size: 32\n", "    size: 32\n    colour_prob: 0.9\n")
    .replace("epochs: 2, batch_size: 32}", "epochs: 20, batch_size: 32, lr: 0.003}")
    .replace("dataset: shapes_val\n", "dataset: shapes_eval\n")
    .replace("models:\n", """\
  shapes_eval:
    kind: synthetic
    split: val
    classes: 4
    train_per_class: 100
    val_per_class: 200
    size: 32
    colour_prob: 0.9
models:
""", 1)
)
#: At most this share of images (of (image, position) pairs for the patch heads) may change
#: their top-1 hit between fp32 and bf16: 4 of 800, so each top-1 moves by at most 0.5 points.
MAX_FLIPPED = 0.005


def correct_files(workdir: Path) -> dict[tuple[str, str], Correctness]:
    """(kind, precision) -> the task's per-image hits (its ``correct`` artifact)."""
    engine = db.connect(f"sqlite:///{workdir / 'r.db'}")
    _, rows = db.query(engine, "SELECT t.kind, t.key_parts, a.path FROM tasks t JOIN artifacts "
                       "a ON a.task_key = t.key WHERE a.role = 'correct'")
    store = Store(workdir / "a")
    out = {}
    for kind, parts, path in rows:
        with np.load(store.path(path)) as npz:
            arrays = {name: npz[name] for name in npz.files}
        out[(kind, json.loads(parts).get("precision", "fp32"))] = Correctness.from_arrays(arrays)
    return out


@pytest.fixture
def one_thread():
    """One torch thread: on a shared 2-core machine, spinning threads make training crawl."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_bf16_agrees_with_fp32_on_a_trained_study_through_the_cli(workdir: Path, one_thread):
    study = str(write_study(workdir, AGREEMENT_STUDY))
    args = ["--db", f"sqlite:///{workdir / 'r.db'}", "--artifacts", str(workdir / "a")]

    def cli(*more: str) -> str:
        result = CliRunner().invoke(main, [*args, *more])
        assert result.exit_code == 0, result.output
        return result.output

    assert "4 done, 0 failed" in cli("run", study, "--batch-size", "auto")
    why = cli("why", study, "--precision", "bf16")
    assert "precision: <absent> -> bf16" in why and "train" not in why  # training is shared
    bf16_run = cli("run", study, "--precision", "bf16")
    assert "3 done, 0 failed" in bf16_run and "1 cached" in bf16_run
    assert "4 tasks: 4 cached, 0 to run" in cli("plan", study)
    assert "4 tasks: 4 cached, 0 to run" in cli("plan", study, "--precision", "bf16")
    engine = db.connect(f"sqlite:///{workdir / 'r.db'}")
    _, infos = db.query(engine, "SELECT kind, info FROM tasks")
    settings = {(k, json.loads(i)["precision"], json.loads(i)["batch_size"]) for k, i in infos}
    assert ("lowpass", "fp32", 64) in settings and ("lowpass", "bf16", 64) in settings

    files = correct_files(workdir)
    for kind in ("lowpass", "fgbg", "cls_isolation"):
        fp32, bf16 = files[(kind, "fp32")], files[(kind, "bf16")]
        assert (fp32.index == bf16.index).all() and fp32.hits.keys() == bf16.hits.keys()
        for hits_key, hits in fp32.hits.items():
            flipped = int((hits != bf16.hits[hits_key]).sum())
            assert flipped <= MAX_FLIPPED * hits.size, (kind, hits_key, flipped, hits.size)
