"""Where a report's files go, and the ``SectionContext`` a kind's section builds through.

``ReportWriter`` writes every file under the report folder and remembers it (the manifest lets
a rebuild delete files it no longer writes). ``KindSection`` is the concrete
``runner.kinds.reporting.SectionContext``: a section's tables, figures and notes become blocks
of its part of the page.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from runner.present import figures
from runner.present.tables import Table, csv_safe, to_markdown
from runner.report.html import FigureFile, Section, TableBlock, links_html
from runner.results.intervals import Derived, with_intervals
from runner.results.study import StudyData

MANIFEST = ".report-files.json"


class ReportWriter:
    """Writes the report's files under one folder and remembers them (for the manifest)."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.written: list[str] = []

    def _path(self, relative: str) -> Path:
        path = self.out_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        self.written.append(relative)
        return path

    def csv(self, frame: pd.DataFrame, relative: str) -> str:
        """Write ``frame`` as CSV, text cells neutralised against spreadsheet formulas."""
        csv_safe(frame).to_csv(self._path(relative), index=False)
        return relative

    def text(self, relative: str, content: str) -> str:
        """Write a text file (UTF-8)."""
        self._path(relative).write_text(content, encoding="utf-8")
        return relative

    def table(self, table: Table, *, folded: bool = False) -> TableBlock:
        """The table as ``tables/<name>.csv`` (long form) and ``tables/<name>.md``."""
        csv = self.csv(table.cells, f"tables/{table.name}.csv")
        markdown = self.text(f"tables/{table.name}.md", to_markdown(table))
        return TableBlock(table, csv, markdown, folded)

    def figure(self, figure: Any, name: str, caption: str) -> FigureFile:
        """A matplotlib figure as ``figures/<name>.png``."""
        relative = f"figures/{name}.png"
        figures.save(figure, self._path(relative))
        return FigureFile(relative, caption)

    def image(self, image: Any, name: str, caption: str) -> FigureFile:
        """A PIL image as ``figures/<name>.png``."""
        relative = f"figures/{name}.png"
        image.save(self._path(relative), format="PNG", optimize=False)
        return FigureFile(relative, caption)

    def finish(self) -> None:
        """Delete files an earlier build wrote that this one did not, then save the manifest."""
        manifest = self.out_dir / MANIFEST
        if manifest.is_file():
            for relative in set(json.loads(manifest.read_text())) - set(self.written):
                stale = self.out_dir / relative
                if stale.is_file() and stale.resolve().is_relative_to(self.out_dir.resolve()):
                    stale.unlink()
        manifest.write_text(json.dumps(sorted(set(self.written)), indent=1))


class KindSection:
    """One kind's ``SectionContext``: what its section builder reads, and where what it adds
    goes (the ``section`` of the page, files through the ``writer``)."""

    def __init__(self, kind: str, data: StudyData, styles: dict[str, dict[str, Any]],
                 writer: ReportWriter, section: Section, *, n_boot: int, seed: int,
                 atlas: str | None = None) -> None:
        self.kind, self.data, self.styles, self.atlas = kind, data, styles, atlas
        self._writer, self._section = writer, section
        self._n_boot, self._seed = n_boot, seed

    def done(self) -> pd.DataFrame | None:
        """The kind's done tasks, or None after noting why the section is empty or partial."""
        tasks = self.data.tasks
        of_kind = tasks[tasks["kind"] == self.kind]
        if of_kind.empty:
            self.note(f"This study has no `{self.kind}` task, so this section is skipped.")
            return None
        done = self.data.done(self.kind)
        pending = of_kind[of_kind["status"] != "done"]
        if len(pending):
            states = ", ".join(f"{n} {s}" for s, n in pending["status"].value_counts().items())
            self.note(f"{len(pending)} of {len(of_kind)} `{self.kind}` tasks are not done "
                      f"({states}); they are left out. See Tasks below.")
        return None if done.empty else done

    def intervals(self, reference: str = "natural",
                  derived: Derived | None = None) -> pd.DataFrame:
        """The kind's accuracy rows with bootstrap intervals (``runner.results.intervals``)."""
        return with_intervals(self.data, self.kind, reference=reference, derived=derived,
                              n_boot=self._n_boot, seed=self._seed)

    def note(self, text: str) -> None:
        """A sentence shown above the section's tables and figures."""
        self._section.notes.append(text)

    def table(self, table: Table, *, folded: bool = False) -> None:
        """Write the table's files and show it."""
        self._section.blocks.append(self._writer.table(table, folded=folded))

    def figure(self, figure: Any, name: str, caption: str) -> None:
        """Save a matplotlib figure and show it."""
        self._section.blocks.append(self._writer.figure(figure, name, caption))

    def image(self, image: Any, name: str, caption: str) -> None:
        """Save a PIL image and show it."""
        self._section.blocks.append(self._writer.image(image, name, caption))

    def links(self, label: str, links: Sequence[tuple[str, str]]) -> None:
        """A line of links under the last block: ``label``, then each (text, href)."""
        self._section.blocks.append(links_html(label, links))
