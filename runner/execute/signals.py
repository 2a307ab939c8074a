"""SIGTERM and SIGINT during a run: both stop it the same way, as an ``Interrupted`` exception
in the main thread, so that the run hands its tasks back and ends ``interrupted`` instead of
dying with its tasks ``running``. The exit status is the shell's: 128 + the signal's number
(130 for Ctrl-C, 143 for SIGTERM).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

#: The signals that stop a run cleanly.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal (a ``KeyboardInterrupt``, so that code catching
    ``Exception`` around a task does not swallow it). ``summary``: what the run did before."""

    def __init__(self, signum: int = signal.SIGINT, summary: Any = None) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)
        self.summary = summary

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """What a shell reports for a process ended by this signal: 128 + its number."""
        return 128 + self.signum


@contextlib.contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """Within the block, the first SIGINT or SIGTERM raises ``Interrupted`` in the main thread;
    later ones are ignored until the block ends, so the clean-up that follows is not cut short.
    Outside the main thread (where handlers cannot be set) the block changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def handler(signum: int, _frame: Any) -> None:
        if not received:
            received.append(signum)
            raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, signal.SIG_DFL if old is None else old)
