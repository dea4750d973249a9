"""Helpers for tests that start processes and check which of them still run."""

from __future__ import annotations

import signal
from pathlib import Path


def is_alive(pid: int) -> bool:
    """True while `pid` runs; a zombie (exited, not yet reaped) counts as dead."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def default_sigint() -> None:
    """Let a test's child process take SIGINT as Ctrl-C.

    A shell starts background jobs with SIGINT ignored, and an ignored signal
    stays ignored across exec, so a suite run in the background would
    otherwise start processes that never see the test's Ctrl-C.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
