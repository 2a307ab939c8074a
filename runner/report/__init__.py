"""Reports: the paper's tables and figures from a study's rows in the result database.

``build_report(study, task_keys, engine, store_root, out_dir, *, model_names=None)`` (from
``runner.report.build``) writes ``index.html`` with CSV/Markdown tables and PNG figures and
returns its path; each installed kind contributes its own section (``runner/kinds/<kind>/
report.py``). It is imported on first use, so that importing ``runner.report`` keeps
matplotlib out of the CLI's start.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "build_report":
        from runner.report.build import build_report

        return build_report
    raise AttributeError(f"module 'runner.report' has no attribute {name!r}")


__all__ = ["build_report"]
