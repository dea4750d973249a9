"""Process supervision for a parallel search on one machine: start, watch, restart and stop the children.

The supervisor starts each child (the chief, the workers) in its own process
group, forwards its output prefixed with its name to stderr and search.log,
and writes the children's process ids and states to workers.json.
`tuner.distributed` decides which children to start.

Restarts. Keras Tuner keeps the trial a worker runs in
`oracle.ongoing_trials[worker id]`, and hands that same trial again to a
worker that asks with the same id. So the supervisor restarts a worker that
dies with the same id, which reruns its trial. A worker that dies
`MAX_RESTARTS` times in a row without finishing a trial in between is
retired: the chief then ends its trial as INVALID, so that the space's
`max_retries_per_trial` decides between a retry on another worker and FAILED
(the default, 0 retries, means FAILED), and forgets the worker. Without that
the chief would wait for the dead worker forever, because it stops only when
no trial is ongoing and every worker it has served has been told to stop.

Fresh processes. A worker started with `--max-trials-per-process N` exits
with `EXIT_RECYCLE` after N trials, and the supervisor starts it again at
once under the same id. TensorFlow 2.21 with Keras 3.15 keeps about 350 MB
of each trial's traced training step after the model is gone. A process
that trains trial after trial therefore grows until the machine runs out of
memory, and only its exit returns the memory. The one-process search runs
its trials the same way, in one supervised child (`tuner.trial_process`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime as dt
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tuner.logs import RESTART_COUNT_VARIABLE
from tuner.run import (RunFolder, atomic_write_json, format_duration, read_trial_records, read_trials,
                       select_best_trial)

log = logging.getLogger(__name__)

#: Exit code of a supervised child that hit an error a restart cannot fix; the supervisor then stops the search.
EXIT_CHILD_FATAL = 3
#: Exit code of a worker that ran its `--max-trials-per-process` trials; the supervisor starts a fresh one.
EXIT_RECYCLE = 4
#: Restarts of one worker in a row, without a finished trial in between, before it is retired.
MAX_RESTARTS = 2
#: Seconds between the progress lines of the supervisor.
SUMMARY_INTERVAL = 30.0
PR_SET_PDEATHSIG = 1


class SearchTerminated(BaseException):
    """SIGTERM reached the supervisor.

    A BaseException, like KeyboardInterrupt, so that no handler of errors catches it.
    """


@dataclass(frozen=True)
class ChildSpec:
    """A child process the supervisor keeps running: its name, command and extra environment.

    With `forward_output` False the child writes to the supervisor's own
    stdout, which keeps Keras' progress bar on a terminal, and logs to
    search.log itself. Its stderr passes through the supervisor unprefixed,
    which shows each of TensorFlow's start-up notices once instead of once per
    process.
    """

    name: str
    role: str
    command: list[str]
    environment: dict[str, str]
    description: str
    forward_output: bool = True


@dataclass
class Child:
    """The supervisor's record of one child across its restarts."""

    spec: ChildSpec
    process: subprocess.Popen[str] | None = None
    reader: threading.Thread | None = None
    status: str = "starting"
    pids: list[int] = field(default_factory=list)
    restarts_in_a_row: int = 0
    starts: int = 0
    # TensorFlow's C++ log messages already shown, without their time and thread id.
    native_messages: set[str] = field(default_factory=set)
    trials_at_start: int = 0
    restart_at: float = 0.0
    last_exit: str | None = None
    last_error: str | None = None
    retired_at: float | None = None
    reason: str | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def active(self) -> bool:
        """True while the child runs or waits for its restart."""
        return self.status in ("starting", "running", "restarting")


@dataclass
class SupervisorOutcome:
    """The end of a supervised run: an error message, or None when the search (or this machine's part) finished."""

    error: str | None = None


class Supervisor:
    """Start children, forward their output, restart crashed workers and stop them all at the end.

    Every child runs in its own process group, so that Ctrl-C at the terminal
    reaches only the supervisor, which then stops the children in order. On
    Linux each child also gets SIGKILL when the supervisor dies, even by
    SIGKILL. That signal is tied to the thread that started the child, so
    children are only ever started from the thread that calls `run`.
    """

    def __init__(self, run: RunFolder, specs: Sequence[ChildSpec], status_path: Path, oracle_address: str = "",
                 max_restarts: int = MAX_RESTARTS, restart_delay: float = 2.0,
                 summary_interval: float = SUMMARY_INTERVAL, stop_timeout: float = 15.0,
                 chief_exit_timeout: float = 90.0, poll_interval: float = 0.5, log_progress: bool = True) -> None:
        self.run_folder = run
        self.children = [Child(spec) for spec in specs]
        self.status_path = status_path
        self.oracle_address = oracle_address
        self.max_restarts = max_restarts
        self.restart_delay = restart_delay
        self.summary_interval = summary_interval
        self.stop_timeout = stop_timeout
        self.chief_exit_timeout = chief_exit_timeout
        self.poll_interval = poll_interval
        # The one-process search has its own line per trial, and a progress line would break its progress bar.
        self.progress_enabled = log_progress
        self.started = time.monotonic()
        self.output_lock = threading.Lock()
        self.log_file: IO[str] | None = None
        self.chief_finished_at: float | None = None
        self.workers_done_at: float | None = None

    # Running

    def run(self) -> SupervisorOutcome:
        """Run the children until the search ends; raise KeyboardInterrupt or SearchTerminated when stopped."""
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
        self.run_folder.path.mkdir(parents=True, exist_ok=True)
        self.log_file = open(self.run_folder.log_path, "a", encoding="utf-8", buffering=1)
        try:
            for child in self.children:
                self.start(child)
            self.write_status()
            next_summary = time.monotonic() + self.summary_interval
            while True:
                outcome = self.poll()
                if outcome is not None:
                    return outcome
                if self.progress_enabled and time.monotonic() >= next_summary:
                    self.log_progress()
                    next_summary = time.monotonic() + self.summary_interval
                time.sleep(self.poll_interval)
        finally:
            self.stop()
            signal.signal(signal.SIGTERM, previous)
            self.write_status()
            if self.progress_enabled:
                self.log_progress()
            with self.output_lock:
                self.log_file.close()
                self.log_file = None

    def start(self, child: Child) -> None:
        child.trials_at_start = self.finished_trials(child.name)
        environment = {**os.environ, **child.spec.environment, "PYTHONUNBUFFERED": "1",
                       RESTART_COUNT_VARIABLE: str(child.starts)}
        forward = child.spec.forward_output
        # Each child leads its own session, so that Ctrl-C at the terminal reaches only the supervisor.
        process = subprocess.Popen(child.spec.command, env=environment, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE if forward else None,
                                   stderr=subprocess.STDOUT if forward else subprocess.PIPE, text=True,
                                   encoding="utf-8", errors="replace", bufsize=1, start_new_session=True,
                                   preexec_fn=_death_signal_hook())
        child.process = process
        child.status = "running"
        child.pids.append(process.pid)
        child.starts += 1
        stream = process.stdout if forward else process.stderr
        assert stream is not None  # Popen was given a PIPE for it
        child.reader = threading.Thread(target=self.copy_output, args=(child, stream), name=f"output-{child.name}",
                                        daemon=True)
        child.reader.start()
        # A fresh process after every few trials is routine; its start is logged only in debug output.
        level = logging.INFO if child.starts == 1 or child.restarts_in_a_row else logging.DEBUG
        log.log(level, "started %s (pid %d, %s)", child.name, process.pid, child.spec.description)

    def copy_output(self, child: Child, stream: IO[str]) -> None:
        """Copy a child's output line by line to stderr, noting its last `error: ` line.

        A forwarded child's lines get its name as a prefix and also go to
        search.log. The stderr of a child that writes its own search.log passes
        unprefixed, less the TensorFlow C++ log messages it has shown before.
        """
        forward = child.spec.forward_output
        prefix = f"[{child.name}] " if forward else ""
        for line in stream:
            text = line.rstrip("\n")
            if text.startswith("error: "):
                child.last_error = text[len("error: "):]
            key = None if forward else native_log_key(text)
            if key is not None:
                if key in child.native_messages:
                    continue
                child.native_messages.add(key)
            with self.output_lock:
                sys.stderr.write(prefix + text + "\n")
                sys.stderr.flush()
                if forward and self.log_file is not None:
                    self.log_file.write(prefix + text + "\n")
        stream.close()

    def poll(self) -> SupervisorOutcome | None:
        """Handle children that exited; return the outcome once the search is over."""
        now = time.monotonic()
        for child in self.children:
            if child.status == "restarting" and self.chief_finished_at is not None:
                # No oracle is left to hand it a trial.
                child.status = "stopped"
                self.write_status()
            if child.status == "restarting" and now >= child.restart_at:
                self.start(child)
                self.write_status()
            if child.status != "running" or child.process is None:
                continue
            code = child.process.poll()
            if code is None:
                continue
            if child.reader is not None:
                # Wait for the last lines, which name the error if there is one.
                child.reader.join(timeout=5)
            child.last_exit = describe_exit(code)
            outcome = self.handle_exit(child, code)
            self.write_status()
            if outcome is not None:
                return outcome
        return self.check_end()

    def handle_exit(self, child: Child, code: int) -> SupervisorOutcome | None:
        if code == 0:
            child.status = "finished"
            if child.spec.role == "chief":
                self.chief_finished_at = time.monotonic()
                log.info("the chief has finished: every trial has ended")
            return None
        if code == EXIT_RECYCLE and child.spec.role == "worker":
            if self.chief_finished_at is not None:
                child.status = "finished"
                return None
            child.status = "restarting"
            child.restarts_in_a_row = 0
            child.restart_at = time.monotonic()
            log.debug("%s ran its trials per process; starting a fresh process with the same id", child.name)
            return None
        child.status = "failed"
        if code == EXIT_CHILD_FATAL:
            if child.last_error is None and not child.spec.forward_output:
                return SupervisorOutcome(f"{child.name} stopped the search with the error above.")
            return SupervisorOutcome(f"{child.name} stopped the search: {child.last_error or child.last_exit}.")
        if child.spec.role == "chief":
            return SupervisorOutcome(f"the chief exited unexpectedly ({child.last_exit}).")
        if self.chief_finished_at is not None:
            log.warning("%s exited (%s) after the chief had finished", child.name, child.last_exit)
            return None
        self.after_crash(child)
        return None

    def after_crash(self, child: Child) -> None:
        """Restart a crashed worker with the same id, or retire it after too many crashes in a row."""
        if self.finished_trials(child.name) > child.trials_at_start:
            child.restarts_in_a_row = 0
        if child.restarts_in_a_row < self.max_restarts:
            child.restarts_in_a_row += 1
            child.status = "restarting"
            child.restart_at = time.monotonic() + self.restart_delay
            log.warning("%s exited (%s); restarting it with the same id in %.0f s, so that it reruns its trial "
                        "(restart %d of %d in a row)", child.name, child.last_exit, self.restart_delay,
                        child.restarts_in_a_row, self.max_restarts)
            return
        child.status = "retired"
        child.retired_at = time.time()
        child.reason = (f"worker {child.name} exited {child.restarts_in_a_row + 1} times in a row while running "
                        f"this trial, last with {child.last_exit}")
        log.error("%s exited (%s) %d times in a row and is retired; the chief ends its trial, and the other "
                  "workers go on", child.name, child.last_exit, child.restarts_in_a_row + 1)

    def check_end(self) -> SupervisorOutcome | None:
        """Return the outcome once no child is left to wait for."""
        workers = [child for child in self.children if child.spec.role == "worker"]
        chief = next((child for child in self.children if child.spec.role == "chief"), None)
        workers_active = any(child.active for child in workers)
        retired = [child.name for child in workers if child.status == "retired"]
        now = time.monotonic()

        if chief is None:
            if workers_active:
                return None
            if retired and not any(child.status == "finished" for child in workers):
                return SupervisorOutcome(f"every worker was retired after crashes ({', '.join(retired)}).")
            return SupervisorOutcome()

        if self.chief_finished_at is not None:
            # Workers get their stop from the oracle before the chief ends; allow them to exit.
            if workers_active and now - self.chief_finished_at < self.chief_exit_timeout:
                return None
            return SupervisorOutcome()

        if workers_active:
            self.workers_done_at = None
            return None
        # No worker is left and the chief still runs. It ends by itself if the last trials are done
        # (Keras Tuner 1.4.8 checks every 20 s), and waits forever if not.
        if self.workers_done_at is None:
            self.workers_done_at = now
        if now - self.workers_done_at < self.chief_exit_timeout:
            return None
        if retired:
            return SupervisorOutcome(f"no worker is left ({', '.join(retired)} retired after crashes) and "
                                     "trials remain.")
        return SupervisorOutcome(f"every worker has finished, but the chief did not end within "
                                 f"{self.chief_exit_timeout:.0f} s.")

    # Stopping

    def stop(self) -> None:
        """Stop every child still running: SIGINT, then SIGKILL after `stop_timeout` seconds or a second Ctrl-C."""
        running = [child for child in self.children if child.process is not None and child.process.poll() is None]
        for child in self.children:
            if child.status == "restarting":
                child.status = "stopped"
        if not running:
            return
        log.info("stopping %s", ", ".join(child.name for child in running))
        for child in running:
            _signal_group(child, signal.SIGINT)
        try:
            deadline = time.monotonic() + self.stop_timeout
            while time.monotonic() < deadline and any(child.process.poll() is None for child in running):
                time.sleep(0.2)
        finally:
            # Also reached on a second Ctrl-C while waiting: nothing may outlive the supervisor.
            for child in running:
                if child.process.poll() is None:
                    log.warning("%s did not stop within %.0f s; killing it", child.name, self.stop_timeout)
                    _signal_group(child, signal.SIGKILL)
                child.process.wait()
                child.last_exit = describe_exit(child.process.returncode)
                if child.status == "running":
                    child.status = "stopped"
                if child.reader is not None:
                    child.reader.join(timeout=5)

    # Reporting

    def finished_trials(self, worker_id: str) -> int:
        """Return the number of trial records that `worker_id` wrote."""
        records = read_trial_records(self.run_folder)
        return sum(1 for record in records.values() if record.get("worker") == worker_id)

    def write_status(self) -> None:
        """Write workers.json: the supervisor's pid and, per child, its pids, state and restarts."""
        children = {}
        for child in self.children:
            children[child.name] = {
                "role": child.spec.role, "devices": child.spec.description, "status": child.status,
                "pid": child.process.pid if child.process is not None else None, "pids": child.pids,
                "starts": child.starts, "restarts_in_a_row": child.restarts_in_a_row, "last_exit": child.last_exit,
                "retired_at": child.retired_at, "reason": child.reason,
            }
        atomic_write_json(self.status_path, {"supervisor_pid": os.getpid(), "oracle": self.oracle_address or None,
                                             "updated_at": _now(), "children": children})

    def log_progress(self) -> None:
        """Log one line: trials completed, running and failed, the best val MAE and the workers' states."""
        trials = read_trials(self.run_folder)
        statuses = trials["status"]
        parts = [f"trials {int((statuses == 'COMPLETED').sum())} completed, {int((statuses == 'RUNNING').sum())} "
                 f"running, {int(statuses.isin(['FAILED', 'INVALID']).sum())} failed"]
        best = select_best_trial(trials)
        if best is not None:
            parts.append(f"best val_mae {best['val_mae']:.2f} (trial {best['trial_id']})")
        states: dict[str, int] = {}
        for child in self.children:
            if child.spec.role == "worker":
                states[child.status] = states.get(child.status, 0) + 1
        parts.append("workers " + ", ".join(f"{count} {state}" for state, count in sorted(states.items())))
        parts.append(f"{format_duration(time.monotonic() - self.started)} elapsed")
        log.info("progress: %s", " | ".join(parts))


# A line of TensorFlow's C++ logging: severity and date (I1204), time, thread id, then "file.cc:12] message".
# Before its logging is set up, TensorFlow writes the date as 0000 and the time as 00:00:<seconds since 1970>.
NATIVE_LOG_LINE = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ (\S+:\d+\] .*)$")
#: The notice absl prints before TensorFlow's C++ logging is set up.
ABSL_NOTICE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"


def native_log_key(line: str) -> str | None:
    """Return a TensorFlow C++ log line without its time and thread id, or None for any other line."""
    if line == ABSL_NOTICE:
        return line
    found = NATIVE_LOG_LINE.match(line)
    return None if found is None else f"{found.group(1)} {found.group(2)}"


def describe_exit(code: int) -> str:
    """Describe a Popen return code: `exit code N`, or the signal that killed the process."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _signal_group(child: Child, signum: int) -> None:
    assert child.process is not None  # only called for started children
    try:
        # Each child leads its own process group (start_new_session), so this reaches anything it started too.
        os.killpg(child.process.pid, signum)
    except ProcessLookupError:
        pass


def _death_signal_hook() -> Callable[[], None] | None:
    """Return a preexec_fn that has Linux send the child SIGKILL when the supervisor dies; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    # Looked up before the fork: the child runs the hook with a single thread, where loading a
    # library could deadlock on a lock another thread of the parent held.
    prctl = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    parent = os.getpid()

    def hook() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        # The supervisor stops children with SIGINT. A shell starts background jobs with SIGINT ignored,
        # and an ignored signal would stay ignored in the child across exec.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        # The parent may have died between the fork and prctl; then no signal will ever come.
        if os.getppid() != parent:
            os._exit(1)

    return hook


def _raise_terminated(signum: int, frame: Any) -> None:
    raise SearchTerminated()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
