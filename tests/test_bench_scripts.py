"""bench/gpu_check.sh: its CPU fallback runs every step at tiny sizes and each step prints its
figure, so the device script cannot rot while no GPU is lent to run it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "gpu_check.sh"
NUMBER = r"[0-9]+(?:\.[0-9]+)?"

#: Each step's figure, as a pattern, and how many times the whole output must show it.
FIGURES = {
    # fused_eval, decode_bound, decode_inproc and decode_vitb: one pass decodes each image once
    r"images decoded per dataset image: fused 1\.00, separate 3\.00": 4,
    r"fused metrics identical to separate runs: True": 4,
    rf"efficiency: fused pass {NUMBER} s = {NUMBER}x the model-compute bound "
    rf"\({NUMBER} forward-equivalents x {NUMBER} s bare forward": 4,
    rf"decode-bound speed-up: {NUMBER}x": 3,
    rf"images/s: fused {NUMBER}, separate {NUMBER} \(dataset images\), decode only {NUMBER}": 3,
    # visualize: features per minute, one table per precision (fp32, bf16)
    rf"(?m)^\s+all\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}x$": 2,
    rf"paper study \(mobilenet_v2\), untrained real-size models, 2 images per dataset: "
    rf"run {NUMBER} s": 1,
    r"gpu_check: total [0-9]+ s": 1,
}
#: bench/precision.py's figures (that bench comes from another change; run when present).
PRECISION_FIGURES = {
    rf"(?m)^bf16: fused pass {NUMBER} images/s": 1,
    r"bf16 vs fp32: top-1 within 0\.5 points on [0-9]+ of [0-9]+ metrics": 1,
}


def run_script(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHON=sys.executable)
    return subprocess.run([str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_script_is_executable_and_strict() -> None:
    assert os.access(SCRIPT, os.X_OK)
    assert "set -euo pipefail" in SCRIPT.read_text()


def test_unknown_argument_is_refused() -> None:
    done = run_script("--bogus", timeout=30)
    assert done.returncode == 2
    assert "unknown argument --bogus" in done.stderr


@pytest.mark.slow
def test_cpu_fallback_prints_every_figure() -> None:
    done = run_script("--device", "cpu")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    steps = ["fused_eval", "decode_bound", "decode_inproc", "decode_vitb", "visualize",
             "paper_smoke"]
    figures = FIGURES
    if (REPO / "bench" / "precision.py").is_file():
        steps, figures = [*steps, "precision"], {**FIGURES, **PRECISION_FIGURES}
    else:
        assert "precision: not run (bench/precision.py is not there yet)" in out
    for step in steps:
        assert re.search(rf"^== {step}: ok in [0-9]+ s$", out, re.M), f"{step} did not finish"
    for pattern, times in figures.items():
        assert len(re.findall(pattern, out)) == times, f"{pattern!r} not printed {times}x"


def test_paper_smoke_keeps_every_visual_entry_at_smoke_size(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The visual study at smoke size: every entry and model kept, `features: all` still split
    into chunk tasks (two per layer), visualize at a few steps; a filter drops a study file
    none of whose models it names."""
    import yaml

    monkeypatch.syspath_prepend(str(REPO / "bench"))
    from paper_smoke import smoke_study

    full = yaml.safe_load((REPO / "studies" / "paper_visual.yaml").read_text())
    smoke = yaml.safe_load(smoke_study(tmp_path, 2, study="paper_visual").read_text())
    assert smoke["models"].keys() == full["models"].keys()
    assert [e["kind"] for e in smoke["studies"]] == [e["kind"] for e in full["studies"]]
    assert all(m["pretrained"] is False for m in smoke["models"].values())
    first = smoke["studies"][0]["params"]
    assert (first["features"], first["chunk"], first["steps"]) == (
        {"start": 0, "stop": 4}, 2, 2)
    # every kind's `features: all` is cut (topk, concepts), without a split
    for entry in smoke["studies"][1:]:
        assert entry["params"].get("features") != "all", entry
        assert "chunk" not in entry["params"] or entry["kind"] == "visualize"
    assert smoke_study(tmp_path, 2, ["clip_b32"], study="paper") is None


@pytest.mark.slow
def test_paper_smoke_runs_the_visual_study_through_report_and_atlas() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "paper_smoke.py"), "--device", "cpu", "--limit",
         "2", "--batch-size", "2", "--models", "clip_b32", "--studies", "paper_visual",
         "--steps", "1", "--copies", "1", "--chunk-features", "2"],
        cwd=REPO, capture_output=True, text=True, timeout=1500,
        env=dict(os.environ, OMP_NUM_THREADS="1"))
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    atlas = rf", atlas {NUMBER} s" if "atlas: not built" not in out else ""
    assert re.search(rf"paper_visual study \(clip_b32\), untrained real-size models, 2 images "
                     rf"per dataset: run {NUMBER} s, report {NUMBER} s{atlas};", out), out[-2000:]
    # every chunk of every layer (12 x 2) + topk + concepts: all done, none failed
    assert re.search(r"^26 done, 0 failed", out, re.M), out[-2000:]
