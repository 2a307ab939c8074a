"""The harness itself: a case that writes is caught, a case that does not passes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.adversarial.harness import Case, check_case


def test_missing_study_file_is_one_paragraph(tmp_path: Path) -> None:
    check_case(Case("missing-file", ["validate", "nope.yaml"], message=["nope.yaml"]), tmp_path)


def test_harness_notices_a_written_file(tmp_path: Path) -> None:
    def writes(folder: Path) -> None:
        pass

    case = Case("writes", ["validate", "nope.yaml"], setup=writes)
    check_case(case, tmp_path)
    (tmp_path / "x").write_text("made before")
    with pytest.raises(AssertionError):
        check_case(Case("wrong-exit", ["validate", "nope.yaml"], exit=0), tmp_path)
