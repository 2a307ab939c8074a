"""Big feature selections planned as chunk tasks (`chunk`): each chunk's params name its layer and
range, so its key says what it holds; `chunk` itself is in no key; finished chunks are cached
on their own; planning again reads the models' shapes from disk without torch; topk chunks of
one (model, dataset) share one streaming pass whose memory does not grow with the dataset."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.errors import SpecError
from runner.kinds import get_kind
from runner.kinds.base import ModelShape
from runner.plan import cache_status, make_plan
from runner.spec import load_study
from tests.helpers import TINY_VIT, write_study

ROOT = Path(__file__).resolve().parents[1]
WIDTH = 128  # the tiny ViT's feed-forward width (4 x 32)

DATA = """\
name: chunks
datasets:
  val: {kind: synthetic, split: val, classes: 4, train_per_class: 8, val_per_class: 4, size: 32}
""" + TINY_VIT


def study(*entries: str) -> str:
    """The tiny study with these `studies:` entries (each a YAML flow mapping)."""
    return DATA + "studies:\n" + "".join(f"  - {e}\n" for e in entries)


def plan_of(folder: Path, text: str, name: str = "study.yaml", **load: int):
    return make_plan(load_study(write_study(folder, text, name), **load))


def chunks(plan) -> list[tuple]:
    """(kind, layers, features) of each task, as its key parts hold them."""
    return [(t.kind, t.key_parts["params"]["layers"], t.key_parts["params"]["features"])
            for t in plan.tasks]


def r(start: int, stop: int, step: int = 1) -> dict:
    return {"start": start, "stop": stop, "step": step}


VIS_ALL = "{kind: visualize, models: [vit], params: {layers: [0, 1], features: all, chunk: 48}}"


def test_features_all_is_split_per_layer_into_ranges_of_chunk_features(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, study(VIS_ALL))
    assert chunks(plan) == [("visualize", [layer], rng) for layer in (0, 1)
                            for rng in (r(0, 48), r(48, 96), r(96, 128))]
    assert len({t.key for t in plan.tasks}) == 6
    assert all("chunk" not in t.key_parts["params"] for t in plan.tasks)
    # a chunk is the task a user gets by writing its layer and range out: same key
    explicit = plan_of(tmp_path, study(
        "{kind: visualize, models: [vit], params: {layers: [1], features: "
        "{start: 48, stop: 96}}}"), "b.yaml")
    assert explicit.tasks[0].key == plan.tasks[4].key


def test_ranges_with_a_step_and_lists_keep_their_form(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, study(
        "{kind: topk, models: [vit], dataset: val, params: {layers: [-1], chunk: 10,"
        " features: {start: 3, stop: 70, step: 3}}}",
        "{kind: topk, models: [vit], dataset: val, params: {layers: [0], chunk: 2,"
        " features: [9, 1, 5, 1]}}"))
    assert chunks(plan) == [("topk", [1], r(3, 31, 3)), ("topk", [1], r(33, 61, 3)),
                            ("topk", [1], r(63, 70, 3)), ("topk", [0], [1, 5]),
                            ("topk", [0], [9])]
    summaries = [t.params_summary() for t in plan.tasks]
    assert summaries[:2] == ["layers=[1], features=3..30 step 3",
                             "layers=[1], features=33..60 step 3"]
    assert summaries[3] == "layers=[0], features=[1,5]"


def test_no_split_leaves_the_task_and_its_key_as_without_chunk(tmp_path: Path) -> None:
    base = "{kind: topk, models: [vit], dataset: val, params: {layers: [0, 1], features: all%s}}"
    keys = [plan_of(tmp_path, study(base % extra), f"{i}.yaml").tasks
            for i, extra in enumerate(["", ", chunk: null", f", chunk: {WIDTH}", ", chunk: 999"])]
    assert all(len(tasks) == 1 for tasks in keys)
    assert len({tasks[0].key for tasks in keys}) == 1
    assert keys[0][0].key_parts["params"]["features"] == "all"
    default = plan_of(tmp_path, study("{kind: visualize, models: [vit], params: {layers: [0],"
                                      " features: all}}"), "default.yaml")
    # visualize's default chunk is 64: the 128 features of a layer make 2 tasks
    assert chunks(default) == [("visualize", [0], r(s, s + 64)) for s in (0, 64)]
    short = plan_of(tmp_path, study("{kind: visualize, models: [vit], params: {layers: [0, 1],"
                                    " features: [0, 1, 2], chunk: 2}}"), "short.yaml")
    # 3 listed features > 2: split, per layer, in runs of 2
    assert chunks(short) == [("visualize", [layer], part) for layer in (0, 1)
                             for part in ([0, 1], [2])]


def test_a_new_chunk_size_reuses_no_result_of_another_range(tmp_path: Path) -> None:
    def keyed(size: int) -> dict[str, tuple]:
        plan = plan_of(tmp_path, study(VIS_ALL.replace("chunk: 48", f"chunk: {size}")),
                       f"c{size}.yaml")
        return {t.key: (t.key_parts["params"]["layers"][0],
                        t.key_parts["params"]["features"]["start"],
                        t.key_parts["params"]["features"]["stop"]) for t in plan.tasks}

    by_size = {size: keyed(size) for size in (32, 48, 96)}
    for a in by_size:
        for b in by_size:
            shared = by_size[a].keys() & by_size[b].keys()
            # a key is shared only where both sizes cut the very same range
            assert all(by_size[a][k] == by_size[b][k] for k in shared)
            if a != b:
                assert {by_size[a][k] for k in shared} == (
                    set(by_size[a].values()) & set(by_size[b].values()))
    for a, b in ((32, 48), (48, 96), (32, 96)):  # only [96, 128) of each layer is cut alike
        shared = by_size[a].keys() & by_size[b].keys()
        assert sorted(by_size[a][k] for k in shared) == [(0, 96, 128), (1, 96, 128)]


def test_a_finished_chunk_is_cached_and_the_others_still_run(tmp_path: Path) -> None:
    from runner import db
    from runner.store import Store

    plan = plan_of(tmp_path, study(VIS_ALL))
    engine = db.connect(f"sqlite:///{tmp_path / 'results.db'}", create=True)
    store = Store(tmp_path / "artifacts")
    run_id = db.start_run(engine, study="chunks", command="test", provenance={})
    done = plan.tasks[2]
    assert db.claim_task(engine, done.row("chunks"), run_id)
    db.finish_task(engine, done.key, metric_rows=[], artifact_rows=[], info={}, device="cpu")
    status = cache_status(plan, engine, store)
    assert [status[t.key].cached for t in plan.tasks] == [False, False, True, False, False,
                                                          False]
    other = plan_of(tmp_path, study(VIS_ALL.replace("chunk: 48", "chunk: 40")), "b.yaml")
    assert not any(s.cached for s in cache_status(other, engine, store).values())
    engine.dispose()


def test_a_layer_or_feature_the_model_lacks_is_the_entrys_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as bad_layer:
        plan_of(tmp_path, study("{kind: visualize, models: [vit], params: {layers: [0, 5],"
                                " features: all, chunk: 8}}"))
    assert "studies[0]" in str(bad_layer.value) and "layer 5 is out of range" in str(
        bad_layer.value)
    with pytest.raises(SpecError) as bad_feature:
        plan_of(tmp_path, study("{kind: topk, models: [vit], dataset: val, params: {layers:"
                                " [0], features: {start: 0, stop: 200}, chunk: 8}}"), "b.yaml")
    assert "feature 128 is out of range" in str(bad_feature.value)


def test_too_many_chunk_tasks_are_refused_with_the_way_out(tmp_path: Path) -> None:
    text = study("{kind: topk, models: [vit], dataset: val,\n"
                 "     params: {layers: all, features: all,\n              chunk: 1}}")
    with pytest.raises(SpecError) as refused:
        plan_of(tmp_path, text, max_tasks=100)
    message = str(refused.value)
    assert "plans 256 tasks (256 from this entry" in message and "--max-tasks 256" in message
    line = text.splitlines().index("              chunk: 1}}") + 1
    assert f":{line}: studies[0].params.chunk" in message  # the `chunk:` line
    assert len(plan_of(tmp_path, text, "b.yaml", max_tasks=256).tasks) == 256


_PLAN_WITHOUT_TORCH = """
import json, sys
from runner.plan import make_plan
from runner.spec import load_study
plan = make_plan(load_study(sys.argv[1]))
print(json.dumps({"torch": "torch" in sys.modules, "keys": [t.key for t in plan.tasks]}))
"""


def test_planning_again_reads_the_shapes_from_disk_without_torch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    path = write_study(tmp_path, study(VIS_ALL))
    monkeypatch.setenv("VITSTUDY_CACHE", str(tmp_path / "cache"))
    keys = [t.key for t in make_plan(load_study(path)).tasks]  # inspects the model once
    assert len(list((tmp_path / "cache" / "shapes").glob("*.json"))) == 1
    out = subprocess.run([sys.executable, "-c", _PLAN_WITHOUT_TORCH, str(path)], cwd=ROOT,
                         env=dict(os.environ), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    again = json.loads(out.stdout.strip().splitlines()[-1])
    assert not again["torch"] and again["keys"] == keys and len(keys) == 6


def test_vitstudy_plan_shows_each_chunks_range(tmp_path: Path) -> None:
    from runner.cli import main

    path = write_study(tmp_path, study(VIS_ALL))
    result = CliRunner().invoke(main, ["--db", f"sqlite:///{tmp_path / 'r.db'}", "--artifacts",
                                       str(tmp_path / "a"), "plan", str(path)])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith("visualize")]
    assert len(rows) == 6
    assert "layers=[0], features=0..47" in rows[0] and "layers=[1], features=96..127" in rows[5]
    assert "6 tasks: 0 cached, 6 to run" in result.output


# ------------------------------------------------------------ topk chunks in the fused pass


def _topk_contexts(tmp_path: Path, model, dataset, **params) -> list:
    from tests.kinds.vis_helpers import context

    kind = get_kind("topk")
    whole = kind.Params.model_validate(params)
    parts = kind.split(whole, lambda: ModelShape.of(model.info))
    out = []
    for i, part in enumerate(parts):
        ctx = context(tmp_path / str(i), "topk", part, model, dataset, batch_size=4)
        ctx.key = f"chunk-{i}"
        out.append(ctx)
    return out


def _values(contexts: list) -> dict[tuple, float]:
    return {(m.layer, m.feature, m.position): m.value for ctx in contexts
            for m in ctx.result.metrics if m.name == "topk_value"}


def test_topk_chunks_share_one_pass_and_equal_the_unsplit_task(tmp_path: Path) -> None:
    from runner.execute.fused import run_fused
    from tests.kinds.vis_helpers import MemoryDataset, colour_images, random_vit

    model, dataset = random_vit(), MemoryDataset(colour_images(10))
    decoded = []
    dataset.decode = lambda index: decoded.append(index) or dataset.images[index]
    batches = dataset.batches
    dataset.batches = lambda *a, **kw: (decoded.extend(b.indices.tolist()) or b
                                        for b in batches(*a, **kw))
    params = {"layers": [0, 1], "features": "all", "k": 3, "render": 0}
    chunked = _topk_contexts(tmp_path / "c", model, dataset, **params, chunk=50)
    assert [(c.params.layers, c.params.features.summary()) for c in chunked] == [
        ([layer], rng) for layer in (0, 1) for rng in ("0..49", "50..99", "100..127")]
    evaluators = [get_kind("topk").evaluator(ctx) for ctx in chunked]
    errors = run_fused(evaluators, model, dataset, batch_size=4)
    assert errors == {ctx.key: None for ctx in chunked}
    assert sorted(decoded) == list(range(len(dataset)))  # six chunk tasks, one pass
    (whole,) = _topk_contexts(tmp_path / "w", model, dataset, **params)
    get_kind("topk").run(whole)
    # equal up to float rounding (a chunk reduces over its own columns)
    assert _values(chunked) == pytest.approx(_values([whole]), rel=1e-5, abs=1e-7)
    assert len(_values(chunked)) == 2 * WIDTH * 3


def test_the_executor_runs_a_models_topk_chunks_in_one_pass(tmp_path: Path) -> None:
    from runner.execute.local import work_batches

    plan = plan_of(tmp_path, study(
        "{kind: topk, models: [vit], dataset: val, params: {chunk: 32}}",
        "{kind: lowpass, models: [vit], dataset: val, params: {radii: [4]}}"))
    assert len(plan.tasks) == 9  # 2 layers x 4 chunks of topk, 1 lowpass
    assert [len(batch) for batch in work_batches(plan.tasks)] == [9]


def test_topk_memory_over_all_features_does_not_grow_with_the_dataset() -> None:
    import torch

    from runner.kinds.fusion import NATURAL
    from runner.kinds.ranking import RankingEvaluator
    from runner.models.base import SiteInfo
    from runner.models.readouts import Activations

    torch.manual_seed(0)
    width, tokens, k = 3072, 50, 5  # ViT-B/32's feed-forward width and 7 x 7 + CLS tokens
    sites = [SiteInfo(f"block{i}.mlp", i, "mlp", width, 1, (7, 7), True) for i in range(3)]

    def state_after(batches: int) -> tuple[int, int]:
        evaluator = RankingEvaluator("all", sites, {s.layer: list(range(width)) for s in sites},
                                     k=k)
        for b in range(batches):
            readouts = {Activations(s.name): torch.randn(4, tokens, width) for s in sites}
            evaluator.update(NATURAL, readouts, torch.zeros(4), torch.arange(4 * b, 4 * b + 4))
        held = [t for top in evaluator.top.values() for t in (top.values, top.indices, top.maps)]
        return sum(t.numel() * t.element_size() for t in held), len(evaluator.__dict__)

    small, large = state_after(2), state_after(12)  # 8 images, then 48
    assert small == large
    assert small[0] == 3 * k * width * (4 + 8 + 49 * 4)  # values, indices, maps: k per feature
