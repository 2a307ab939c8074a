"""What a kind contributes to a study's report, and what its section builder receives.

A kind's folder may hold ``report.py`` with ``SECTION = ReportSection(...)``. The report step
(``runner/report/build.py``) orders the sections of every installed kind by ``order``, and for
each calls ``build(ctx)`` with a ``SectionContext``: the study's rows, read once, and the means
to add notes, tables and figures. A section never reads the database or writes files itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import pandas as pd

    from runner.present.tables import Table
    from runner.results.study import StudyData


class SectionContext(Protocol):
    """A section builder's view of the report being built, for one kind."""

    #: the kind whose section this is
    kind: str
    #: every row of the study, read once (tasks, metrics, artifacts, labels, models)
    data: StudyData
    #: line style (colour, marker, dashes) of every task label, by model family
    styles: dict[str, dict[str, Any]]
    #: the study's atlas root as a link from the report's page (``../../atlas/quickstart``),
    #: or None when no atlas was built; feature pages are ``runner.present.atlas_links`` paths
    atlas: str | None

    def done(self) -> pd.DataFrame | None:
        """The kind's done tasks in model display order; None, after a note saying why, when
        the study has none (a note also lists the tasks that are not done)."""
        ...

    def intervals(self, reference: str = "natural",
                  derived: dict[str, tuple[str, str]] | None = None) -> pd.DataFrame:
        """The kind's accuracy metric rows (``top1``/``top5`` and their ``_norm``) with 95%
        bootstrap intervals ``ci_low``/``ci_high`` from each task's ``correct`` arrays.
        ``reference``: the variant the ``_norm`` metrics divide by. ``derived``: metric
        variant -> (stored 2-D variant, ``average`` | ``maximum``) for metrics that reduce
        per-position accuracy (``patch_average`` -> (``patch``, ``average``))."""
        ...

    def note(self, text: str) -> None:
        """A sentence shown above the section's tables and figures."""
        ...

    def table(self, table: Table, *, folded: bool = False) -> None:
        """Add a table (written as CSV and Markdown; ``folded``: collapsed in the page)."""
        ...

    def figure(self, figure: Any, name: str, caption: str) -> None:
        """Add a matplotlib figure, saved as ``figures/<name>.png``."""
        ...

    def image(self, image: Any, name: str, caption: str) -> None:
        """Add a PIL image, saved as ``figures/<name>.png``."""
        ...

    def links(self, label: str, links: Sequence[tuple[str, str]]) -> None:
        """A line of links under the last figure: ``label``, then each (text, href); hrefs are
        relative to the report's page (``ctx.atlas + "/" + atlas_links.feature_page(...)``)."""
        ...


@dataclass(frozen=True)
class ReportSection:
    """One kind's section of the report: where it goes, its heading, and how it is built."""

    #: the page anchor, unique among sections (``lowpass``, ``token-mixing``)
    id: str
    title: str
    #: a paragraph (HTML) saying what the section measures and what the paper claims
    intro: str
    #: adds the section's notes, tables and figures through the ``SectionContext``; an
    #: exception it raises is shown in the section, and the other sections are still built
    build: Callable[[SectionContext], None]
    #: place in the report (then ``id``): the paper's order for the built-in kinds (10, 20,
    #: ...); a kind from another package defaults to after them
    order: int = 100
