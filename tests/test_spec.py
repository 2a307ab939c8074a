"""Bad input: each kind gives a one-paragraph error with file, line and key, exit 2, and
nothing written to the database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.cli import main
from runner.errors import SpecError
from runner.spec import load_study
from tests.helpers import TINY_STUDY, write_study

LOWPASS_ENTRY = "    params: {radii: [2, 8]}"

# (case id, how to break the tiny study, expected line, text the message must contain)
BAD_STUDIES = [
    ("malformed-yaml", lambda s: s.replace("  shapes:\n", "  shapes:\n\t  bad\n", 1), 4,
     "malformed YAML"),
    ("unknown-top-key", lambda s: s + "extra: 1\n", 29, "extra: unknown key"),
    ("unknown-nested-key", lambda s: s.replace("    size: 32\n", "    sise: 32\n", 1), 9,
     "datasets.shapes.sise: unknown key"),
    ("wrong-type", lambda s: s.replace("epochs: 2", "epochs: many"), 23,
     "models.vit.train.epochs"),
    ("unknown-kind", lambda s: s.replace("kind: lowpass", "kind: lowpas"), 25,
     "unknown study kind 'lowpas'"),
    ("unknown-model-ref", lambda s: s.replace("models: [vit]", "models: [vit, resnet]"), 26,
     "unknown model 'resnet'"),
    ("unknown-dataset-ref", lambda s: s.replace("dataset: shapes_val", "dataset: shapez"), 27,
     "unknown dataset 'shapez'"),
    ("sweep-unknown-param", lambda s: s.replace(
        LOWPASS_ENTRY, LOWPASS_ENTRY + "\n    sweep: {radius: [1, 2]}"), 29,
     "has no param 'radius'"),
    ("unknown-param", lambda s: s.replace("radii: [2, 8]", "radii: [2, 8], sigma: 3"), 28,
     "studies[0].params.sigma"),
    ("bad-param-value", lambda s: s.replace("radii: [2, 8]", "radii: [two]"), 28,
     "studies[0].params.radii"),
    ("duplicate-key", lambda s: s.replace("    size: 32\n", "    size: 32\n    size: 16\n", 1),
     10, "duplicate key"),
    ("unset-env-var", lambda s: s.replace("name: tiny", "name: ${VITSTUDY_TEST_UNSET}"), 1,
     "VITSTUDY_TEST_UNSET is not set"),
    ("model-without-name", lambda s: s.replace("    name: vit_tiny_patch16_224\n", ""), 18,
     "needs `name`"),
    ("bad-dataset-kind", lambda s: s.replace("kind: synthetic", "kind: synth", 1), 4,
     "datasets.shapes.kind"),
    ("not-a-mapping", lambda s: "- just\n- a list\n", 1, "expected a mapping"),
    ("uncached-pretrained-weights", lambda s: s.replace("    pretrained: false\n", "")
     .replace("    train: {dataset: shapes, val: shapes_val, epochs: 2, batch_size: 32}\n", ""),
     18, "weights"),
    ("unknown-timm-model", lambda s: s.replace("name: vit_tiny_patch16_224",
                                               "name: vit_tiny_patch16_22"), 20,
     "vit_tiny_patch16_224"),
    ("layer-out-of-range", lambda s: s + "  - kind: cls_isolation\n    models: [vit]\n"
     "    dataset: shapes_val\n    params: {layers: [7]}\n", 29, "cls_isolation on model 'vit'"),
    ("top-features-without-dataset", lambda s: s + "  - kind: visualize\n    models: [vit]\n"
     "    params: {features: {top: 2}}\n", 29, "needs a `dataset:`"),
    ("missing-dataset-folder", lambda s: s.replace(
        "  shapes_val:\n    kind: synthetic\n    split: val\n    classes: 4\n"
        "    train_per_class: 24\n    val_per_class: 6\n    size: 32\n",
        "  shapes_val:\n    kind: imagenet\n    root: /nonexistent/imagenet/val\n"), None,
     "/nonexistent/imagenet/val"),
]


def run_cli(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.output


@pytest.mark.parametrize(("case", "breaker", "line", "needle"), BAD_STUDIES,
                         ids=[c[0] for c in BAD_STUDIES])
def test_bad_study_is_exit_2_with_location_and_nothing_written(
    tmp_path: Path, case: str, breaker, line: int | None, needle: str
) -> None:
    study = write_study(tmp_path, breaker(TINY_STUDY))
    db = tmp_path / "results.db"
    code, out = run_cli(["--db", f"sqlite:///{db}", "--artifacts", str(tmp_path / "a"),
                         "run", str(study)])
    assert code == 2, out
    assert out.startswith("error: "), out
    assert str(study) in out
    if line is not None:
        assert f"{study}:{line}:" in out, out
    assert needle in out, out
    assert out.strip().count("\n") == 0, "the error is one paragraph"
    assert not db.exists(), "nothing may be written for an invalid study"
    assert not (tmp_path / "a").exists()


def test_missing_study_file_is_exit_2(tmp_path: Path) -> None:
    code, out = run_cli(["validate", str(tmp_path / "nope.yaml")])
    assert code == 2 and "cannot read the study file" in out


def test_validate_ok_counts_tasks(tiny_study: Path) -> None:
    code, out = run_cli(["validate", str(tiny_study)])
    assert code == 0, out
    assert "2 tasks" in out


def test_env_interpolation_with_default_and_value(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    text = TINY_STUDY.replace("name: tiny", "name: ${STUDY_NAME:-fallback}")
    assert load_study(write_study(tmp_path, text)).name == "fallback"
    monkeypatch.setenv("STUDY_NAME", "from-env")
    assert load_study(write_study(tmp_path, text)).name == "from-env"


def test_spec_error_carries_location(tmp_path: Path) -> None:
    study = write_study(tmp_path, TINY_STUDY.replace("epochs: 2", "epochs: 0"))
    with pytest.raises(SpecError) as info:
        load_study(study)
    assert info.value.line == 23
    assert info.value.key == "models.vit.train.epochs"


def test_schema_is_json_schema_of_the_study_file() -> None:
    code, out = run_cli(["schema"])
    assert code == 0
    schema = json.loads(out)
    assert set(schema["properties"]) >= {"name", "datasets", "models", "studies"}
    assert "ModelSpec" in schema["$defs"]


def test_relative_dataset_paths_resolve_against_the_study_folder(tmp_path: Path,
                                                                  monkeypatch) -> None:
    text = TINY_STUDY.replace(
        "  shapes_val:\n    kind: synthetic\n    split: val\n    classes: 4\n"
        "    train_per_class: 24\n    val_per_class: 6\n    size: 32\n",
        "  shapes_val:\n    kind: imagenet\n    root: data/val\n    boxes: data/boxes\n")
    (tmp_path / "studies").mkdir()
    study = write_study(tmp_path / "studies", text)
    monkeypatch.chdir(tmp_path)  # the shell is elsewhere than the study file
    spec = load_study(study).study.datasets["shapes_val"]
    assert spec.root == str(tmp_path / "studies" / "data" / "val")
    assert spec.boxes == str(tmp_path / "studies" / "data" / "boxes")


#: Two lowpass entries sharing params through a YAML anchor; the second overrides one key.
MERGED = TINY_STUDY.replace(LOWPASS_ENTRY,
                            "    params: &base {radii: [2, 8], highpass: true}") + """\
  - kind: lowpass
    models: [vit]
    dataset: shapes_val
    params: {<<: *base, radii: [4]}
"""


def test_a_merged_anchor_with_overridden_keys_is_not_a_duplicate(tmp_path: Path) -> None:
    loaded = load_study(write_study(tmp_path, MERGED))
    first, second = (loaded.entry_params(i)[0] for i in (0, 1))
    assert (first.radii, first.highpass) == ((2.0, 8.0), True)
    assert (second.radii, second.highpass) == ((4.0,), True)  # merged, then overridden
    assert loaded.line_of("studies", 1, "params", "radii") == MERGED.splitlines().index(
        "    params: {<<: *base, radii: [4]}") + 1
    twice = MERGED.replace("radii: [4]}", "radii: [4], radii: [5]}")
    with pytest.raises(SpecError, match="studies\\[1\\].params.radii: duplicate key"):
        load_study(write_study(tmp_path, twice, "twice.yaml"))
