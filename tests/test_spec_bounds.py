"""Bounded work from small input: the alias-expansion counter, the task-count limit, the
device check, and the refusal times they promise."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from runner.errors import DeviceError, ExpansionError, SpecError
from runner.execute.provenance import check_device
from runner.schema import StudyEntry
from runner.spec import MAX_YAML_NODES, entry_task_count, expanded_size, load_study
from tests.adversarial.test_study_files import BASE, SWEEP, alias_bomb
from tests.helpers import write_study


def _compose(text: str) -> yaml.Node:
    return yaml.compose(text, Loader=yaml.SafeLoader)


def test_expanded_size_counts_every_node_once_per_path() -> None:
    # mapping(1) + 2 keys + list(1) + 3 scalars, then the alias repeats the list's 4 nodes
    assert expanded_size(_compose("a: &x [1, 2, 3]\nb: *x\n"), 100) == 1 + 2 + 4 + 4
    assert expanded_size(_compose("just a scalar"), 1) == 1


def test_expanded_size_matches_a_real_expansion() -> None:
    text = alias_bomb(3)  # 10**3 leaves under a3

    def count(value: object) -> int:
        if isinstance(value, dict):
            return 1 + sum(1 + count(v) for v in value.values())
        if isinstance(value, list):
            return 1 + sum(count(v) for v in value)
        return 1

    assert expanded_size(_compose(text), 10**6) == count(yaml.safe_load(text))


def test_expanded_size_stops_at_the_limit_and_at_a_cycle() -> None:
    with pytest.raises(ExpansionError, match="past 1,000"):
        expanded_size(_compose(alias_bomb(4)), 1000)
    with pytest.raises(ExpansionError, match="contains them") as cycle:
        expanded_size(_compose("top:\n  x: &a [1, *a]\n"), 10**6)
    assert cycle.value.line == 2


def test_a_billion_laughs_is_refused_in_milliseconds(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb(9))  # 10**9 leaves in under 1 KB
    assert path.stat().st_size < 1024
    started = time.perf_counter()
    with pytest.raises(SpecError, match=f"past {MAX_YAML_NODES:,} values") as e:
        load_study(path)
    assert time.perf_counter() - started < 0.5
    assert e.value.line == 7


def test_entry_task_count_is_the_product_of_sweeps_times_models() -> None:
    entry = StudyEntry(kind="topk", models=["a", "b", "c"],
                       sweep={"k": [1, 2, 3, 4], "score": ["mean", "max"]})
    assert entry_task_count(entry) == 24
    assert entry_task_count(StudyEntry(kind="topk")) == 1


def test_max_tasks_refuses_before_expanding_and_can_be_raised(tmp_path: Path) -> None:
    path = write_study(tmp_path, SWEEP)  # 4 tasks
    with pytest.raises(SpecError, match="4 tasks .* limit of 3") as e:
        load_study(path, max_tasks=3)
    assert e.value.key == "studies[0].sweep"
    assert load_study(path, max_tasks=4).study.studies[0].sweep


def test_a_million_task_sweep_is_refused_at_once(tmp_path: Path) -> None:
    values = ", ".join(str(i) for i in range(1000))
    sweep = f"sweep: {{k: [{values}], render: [{values}]}}"
    text = BASE.replace("params: {layers: [0], features: [0]}",
                        f"params: {{layers: [0]}}\n    {sweep}")
    started = time.perf_counter()
    with pytest.raises(SpecError, match="1,000,000 tasks"):
        load_study(write_study(tmp_path, text))
    assert time.perf_counter() - started < 2.0


def test_check_device_accepts_what_torch_names_and_refuses_the_rest() -> None:
    for device in ("auto", "cpu", "cuda:0", "mps"):
        check_device(device, here=False)  # syntax only: a Ray worker may hold the GPU
    check_device("cpu")
    for device in ("gpu", "cuda:", "CUDA", "cuda:x", ""):
        with pytest.raises(DeviceError, match="unknown device"):
            check_device(device, here=False)
    with pytest.raises(DeviceError, match="not available"):
        check_device("cuda:99")
