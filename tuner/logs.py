"""Logging set-up shared by the command line and worker processes."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)-7s %(message)s"
DATE_FORMAT = "%H:%M:%S"


class RunLogHandler(logging.FileHandler):
    """The file handler that writes a run folder's search.log."""


def configure_console(verbose: bool = False, prefix: str = "") -> None:
    """Send agetune's log records to stderr, one line each, optionally prefixed (a worker's name)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(prefix + FORMAT, DATE_FORMAT))
    root = logging.getLogger("tuner")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False


def attach_log_file(path: Path, prefix: str = "") -> None:
    """Also append agetune's log records to `path` (the run folder's search.log)."""
    root = logging.getLogger("tuner")
    resolved = str(path.resolve())
    for handler in list(root.handlers):
        if getattr(handler, "baseFilename", None) == resolved:
            return
        if isinstance(handler, RunLogHandler):
            # One process works on one run at a time; an earlier run's log must not receive this one's lines.
            root.removeHandler(handler)
            handler.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    if root.level == logging.NOTSET:
        # The run's log keeps one line per trial also when no console was configured (library use).
        root.setLevel(logging.INFO)
    handler = RunLogHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(prefix + "%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%d %H:%M:%S"))
    root.addHandler(handler)


#: Environment variable with the number of earlier starts of a supervised child (0 on the first start).
RESTART_COUNT_VARIABLE = "AGETUNE_RESTART_COUNT"


def is_first_start() -> bool:
    """False in a process that a supervisor has started before, where once-per-search messages were shown already."""
    return os.environ.get(RESTART_COUNT_VARIABLE, "0") == "0"
