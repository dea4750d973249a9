"""The oracle's side of a parallel search: release retired workers, stop on failed trials, pause on IDLE.

`ChiefWatcher` runs in the chief process next to Keras Tuner's gRPC oracle
service. `pause_when_idle` wraps a worker's oracle client.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from typing import Any

import keras_tuner

from tuner.run import atomic_write_json
from tuner.search import PreparedSearch, failed_trials_error
from tuner.supervisor import _now

log = logging.getLogger(__name__)

# Keras Tuner's workers ask again at once when the oracle returns an IDLE trial, which Hyperband
# does while it waits for a round to finish. This pause keeps such a worker from spinning a CPU core.
IDLE_PAUSE_SECONDS = 2.0


def pause_when_idle(client: Any) -> None:
    """Make a worker's oracle client wait `IDLE_PAUSE_SECONDS` after each IDLE trial before it asks again."""
    ask = client.create_trial

    def create_trial(tuner_id: str) -> keras_tuner.engine.trial.Trial:
        trial = ask(tuner_id)
        if trial.status == keras_tuner.engine.trial.TrialStatus.IDLE:
            time.sleep(IDLE_PAUSE_SECONDS)
        return trial

    client.create_trial = create_trial


@keras_tuner.synchronized
def release_worker(oracle: keras_tuner.Oracle, worker_id: str, message: str) -> tuple[str | None, str | None]:
    """End the trial a dead worker left running, as INVALID, and forget the worker.

    Returns the trial id (None if the worker held no trial) and, when ending
    the trial exceeded `max_consecutive_failed_trials`, Keras Tuner's error.
    Runs under the oracle's lock, like its gRPC calls.
    """
    oracle.tuner_ids.discard(worker_id)
    trial = oracle.ongoing_trials.get(worker_id)
    if trial is None:
        return None, None
    trial.status = keras_tuner.engine.trial.TrialStatus.INVALID
    trial.message = message
    try:
        oracle.end_trial(trial)
    except RuntimeError as error:
        # Keras Tuner raises here after too many failed trials in a row. Caught inside this
        # function, so that the lock taken around it is released.
        if "consecutive failures" not in str(error):
            raise
        return trial.trial_id, str(error)
    return trial.trial_id, None


class ChiefWatcher(threading.Thread):
    """A thread in the chief that releases retired workers and stops the chief after too many failed trials.

    Supervisors mark a worker retired in the run folder's workers*.json. Only
    marks made after this chief started count, so that a file left by an
    earlier session never releases a worker of this one.
    """

    def __init__(self, oracle: keras_tuner.Oracle, prepared: PreparedSearch, exit_code: int,
                 interval: float = 2.0) -> None:
        super().__init__(name="chief-watcher", daemon=True)
        self.oracle = oracle
        self.prepared = prepared
        self.exit_code = exit_code
        self.interval = interval
        self.started_at = time.time()
        self.released: set[str] = set()

    def run(self) -> None:
        while True:
            time.sleep(self.interval)
            self.check_failures()
            for worker_id, message in self.retired_workers():
                self.release(worker_id, message)

    def check_failures(self) -> None:
        """Stop the chief once Keras Tuner's limit of failed trials in a row is reached."""
        try:
            self.oracle._check_consecutive_failures()
        except RuntimeError as error:
            # When a worker's end_trial call raised this, Keras Tuner left the oracle's lock held,
            # so no further call would ever return. Stopping is the only way on.
            self.abort(str(failed_trials_error(self.prepared, str(error))))

    def retired_workers(self) -> list[tuple[str, str]]:
        """Return (worker id, reason) for workers retired after this chief started and not yet released."""
        found = []
        for path in sorted(self.prepared.run.path.glob("workers*.json")):
            try:
                status = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                # Written atomically, so a damaged file is not agetune's and is skipped.
                continue
            for name, child in status.get("children", {}).items():
                retired_at = child.get("retired_at")
                if (child.get("role") == "worker" and child.get("status") == "retired" and name not in self.released
                        and isinstance(retired_at, int | float) and retired_at >= self.started_at):
                    found.append((name, child.get("reason") or f"worker {name} was retired"))
        return found

    def release(self, worker_id: str, message: str) -> None:
        self.released.add(worker_id)
        try:
            trial_id, failure = release_worker(self.oracle, worker_id, message)
        except RuntimeError as error:
            self.abort(f"the oracle could not release retired worker {worker_id}: {error}")
            return
        if failure is not None:
            self.abort(str(failed_trials_error(self.prepared, failure)))
        if trial_id is None:
            log.warning("retired worker %s held no trial; the oracle no longer waits for it", worker_id)
            return
        status = self.oracle.trials[trial_id].status
        # The worker died before it could write the trial's record; trials.csv names it from this one.
        record = {"trial_id": trial_id, "worker": worker_id, "status": status, "history": [], "error": message,
                  "finished_at": _now()}
        atomic_write_json(self.prepared.run.trials_dir / f"{trial_id}.json", record)
        if status == keras_tuner.engine.trial.TrialStatus.INVALID:
            log.warning("retired worker %s held trial %s; it goes back to the queue for another worker "
                        "(max_retries_per_trial allows it)", worker_id, trial_id)
        else:
            log.warning("retired worker %s held trial %s; the trial is %s", worker_id, trial_id, status)

    def abort(self, message: str) -> None:
        """Log `message` as the chief's fatal error and end the process at once."""
        log.error(message)
        print(f"error: {message}", file=sys.stderr, flush=True)
        for handler in logging.getLogger("tuner").handlers:
            handler.flush()
        # A normal exit would wait for gRPC threads that may hang on the oracle's lock.
        os._exit(self.exit_code)
