"""The one-process search in fresh processes: a supervisor parent and a trial process that it restarts.

TensorFlow 2.21 with Keras 3.15 keeps about 350 MB of every trial's traced
training step after the trial's model is gone (`benchmarks/memory_trials.py`
measures it), so one process that trains trial after trial grows until the
machine runs out of memory. The end of a process returns all of it.

So `agetune search` without `--workers`, `--gpus` or `--role` runs in two
processes. The parent validates the input (`prepare_search`), marks the
search as running, and starts the trial process with the same options plus
`--supervised`. The trial process trains up to `--max-trials-per-process`
trials as the Keras Tuner tuner `tuner0`, exactly as a one-process search,
and exits with `EXIT_RECYCLE`. The parent's `Supervisor` then starts a fresh
one, which resumes the oracle from the run folder. This is the same resume
that follows an interruption, so no trial is lost or repeated. Once the
oracle has no trial left the trial process exits with 0, and the parent
writes the best model and state.json.

The trial process writes to the parent's terminal and to search.log itself,
so Keras' progress bar still works. A trial process that crashes is started
again under the same tuner id and reruns its trial, up to `MAX_RESTARTS`
times in a row, as a parallel worker would be.

`--max-trials-per-process 0` runs the whole search in the one process
(`tuner.search.run_search`), which is what the library does when called
directly.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import tensorflow as tf

from tuner.distributed import child_command, describe_devices, run_supervisor
from tuner.errors import AgetuneError
from tuner.search import (SearchOptions, SearchSummary, build_tuner, failed_trials_error, finish_search,
                          mark_search_running, prepare_search, resolve_switch, search_elapsed, search_trials)
from tuner.supervisor import ChildSpec, SearchTerminated, Supervisor

log = logging.getLogger(__name__)

#: Keras Tuner's id for the tuner of a one-process search; resuming a search started in one process needs it.
ONE_PROCESS_TUNER_ID = "tuner0"


def run_search_in_processes(options: SearchOptions, max_trials_per_process: int) -> SearchSummary:
    """Run (or resume) a one-process search whose trials train in a child started afresh every few trials.

    Raises AgetuneError on a fatal error, KeyboardInterrupt on SIGINT and
    SearchTerminated on SIGTERM, after the trial process has stopped.
    """
    if max_trials_per_process < 1:
        raise AgetuneError(f"--max-trials-per-process must be 1 or more here, got {max_trials_per_process}.")
    # This process trains nothing, but TensorFlow would reserve nearly all of a GPU's memory the first
    # time it used one (saving the best model at the end), so it takes only what it needs.
    for gpu in tf.config.list_physical_devices("GPU"):
        tf.config.experimental.set_memory_growth(gpu, True)
    prepared = prepare_search(options)
    run = prepared.run
    if resolve_switch(options.mixed_precision, "mixed-precision"):
        log.info("mixed precision on: float16 compute, float32 weights and output")
    command = child_command(options, run.path, max_trials_per_process=max_trials_per_process)
    every = "each trial" if max_trials_per_process == 1 else f"every {max_trials_per_process} trials"
    log.info("training in a fresh process for %s (--max-trials-per-process %d)", every, max_trials_per_process)
    spec = ChildSpec(ONE_PROCESS_TUNER_ID, "worker", command, {}, describe_devices(), forward_output=False)
    started = mark_search_running(run)
    supervisor = Supervisor(run, [spec], run.path / "workers.json", log_progress=False)
    try:
        run_supervisor(supervisor, run, started)
    except (KeyboardInterrupt, SearchTerminated):
        log.warning("search interrupted; the trial in progress will run again when the search resumes")
        raise
    return finish_search(run, started)


def run_trial_process(options: SearchOptions, max_trials_per_process: int) -> None:
    """Train trials of a one-process search until the oracle has none left; run as the supervised child.

    Raises TrialsPerProcessReached when the oracle hands out a trial after
    `max_trials_per_process` trials ended here, and AgetuneError when the
    search must stop (too many failed trials in a row).
    """
    # The parent has shown the data summary and the warnings; the log file is this process's own.
    prepared = prepare_search(replace(options, log_setup=False, overwrite=False))
    mixed_precision = resolve_switch(options.mixed_precision, "mixed-precision")
    jit_compile = resolve_switch(options.xla, "xla")
    tuner = build_tuner(prepared, mixed_precision, jit_compile)
    if max_trials_per_process:
        tuner.limit_trials_per_process(max_trials_per_process)
    # Trial lines report the search's time, not this process's.
    tuner.search_started = time.monotonic() - search_elapsed(prepared.run)
    try:
        search_trials(prepared, tuner, options.verbose)
    except RuntimeError as error:
        if "consecutive failures" not in str(error):
            raise
        raise failed_trials_error(prepared, str(error)) from None
