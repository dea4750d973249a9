"""Parallel trials: Keras Tuner's chief/worker mode, one worker per GPU or per share of the CPU cores.

Keras Tuner runs a search in several processes when three environment
variables are set: `KERASTUNER_TUNER_ID` ("chief" for the process that runs
the oracle, any other id for a worker), `KERASTUNER_ORACLE_IP` and
`KERASTUNER_ORACLE_PORT`. The chief's `tuner.search()` serves the oracle over
gRPC until every trial has ended; each worker's tuner asks it for trials,
trains them and reports back. agetune adds no protocol of its own.

On one machine (`agetune search --workers N` or `--gpus ...`) the command
becomes a supervisor. It runs `prepare_search` itself, so that every input
error surfaces before any child starts, then starts these children, each by
running the same command again with `--role`:

    chief       the oracle on a free loopback port; no GPU, one CPU thread, no datasets
    worker0...  a worker pinned to its GPUs (CUDA_VISIBLE_DEVICES) or to its share
                of the CPU threads; builds the datasets and trains trials

The supervisor forwards every child's output, prefixed `[chief]`,
`[worker0]`..., to its stderr and to the run folder's search.log, logs a
progress line every 30 s and writes the children's process ids and states to
`workers.json`. When the chief ends it writes the best model and state.json,
as a one-process search does. Across machines, `--role chief` and
`--role worker` start one part each (see `run_chief` and `run_worker`).

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

Learning rate with `--gpus-per-trial K`: each trial trains with
`tf.distribute.MirroredStrategy` on K GPUs and a global batch of
batch_size x K, and the space's learning rate is used as it is, with no
scaling. The search tunes the learning rate for the batch it actually trains
with, so the values in trials.csv are the ones that trained the models. When
you retrain the best trial on another number of GPUs, keep the global batch
or scale the learning rate linearly with it.

Exit codes of `agetune search` in parallel: 0 the search finished; 1 a fatal
error (invalid input, a child reported a fatal error, the chief died, or no
worker was left); 130 interrupted by SIGINT (Ctrl-C); 143 stopped by SIGTERM.
A supervised child exits with 0 when its part is done, `EXIT_CHILD_FATAL` on
an error that a restart cannot fix, and 130 when interrupted; any other exit
counts as a crash.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime as dt
import ipaddress
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import grpc
import keras_tuner
import tensorflow as tf

from tuner.errors import AgetuneError
from tuner.run import RunFolder, atomic_write_json, read_trial_records, read_trials, select_best_trial
from tuner.search import (PreparedSearch, SearchOptions, SearchSummary, build_tuner, failed_trials_error,
                          finish_search, gpu_count, mark_search_running, prepare_search, resolve_switch,
                          search_trials)

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
CHIEF_ID = "chief"
#: Exit code of a supervised child that hit an error a restart cannot fix; the supervisor then stops the search.
EXIT_CHILD_FATAL = 3
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
#: Restarts of one worker in a row, without a finished trial in between, before it is retired.
MAX_RESTARTS = 2
#: Seconds between the progress lines of the supervisor.
SUMMARY_INTERVAL = 30.0
# Keras Tuner's workers ask again at once when the oracle returns an IDLE trial, which Hyperband
# does while it waits for a round to finish. This pause keeps such a worker from spinning a CPU core.
IDLE_PAUSE_SECONDS = 2.0
PR_SET_PDEATHSIG = 1
# Worker ids name files in the run folder (tuner/<id>.json), and Keras Tuner treats any id
# that contains "chief" as the chief.
WORKER_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class SearchTerminated(BaseException):
    """SIGTERM reached the supervisor.

    A BaseException, like KeyboardInterrupt, so that no handler of errors catches it.
    """


# --- Options and plans -------------------------------------------------------------------------


@dataclass
class ParallelOptions:
    """The parallel part of `agetune search`: how many workers, on which devices, in which role."""

    workers: int | None = None
    gpus: str | None = None
    gpus_per_trial: int = 1
    role: str | None = None
    oracle_address: str | None = None
    worker_id: str | None = None
    supervised: bool = False

    @property
    def enabled(self) -> bool:
        """True when the search runs in more than this one process."""
        return self.workers is not None or self.gpus is not None or self.role is not None

    def validate(self) -> None:
        """Raise AgetuneError for a combination of options that cannot work, before anything starts."""
        if self.role not in (None, "chief", "worker"):
            raise AgetuneError(f"--role must be chief or worker, got {self.role!r}.")

        if self.workers is not None and self.gpus is not None:
            raise AgetuneError("pass either --workers (CPU workers) or --gpus (one worker per GPU group), not both.")
        if self.workers is not None and self.workers < 1:
            raise AgetuneError(f"--workers must be 1 or more, got {self.workers}.")
        if self.gpus_per_trial < 1:
            raise AgetuneError(f"--gpus-per-trial must be 1 or more, got {self.gpus_per_trial}.")
        if self.gpus_per_trial > 1 and self.gpus is None and self.role != "worker":
            raise AgetuneError("--gpus-per-trial needs --gpus (or --role worker on a machine with that many GPUs).")

        if not self.enabled and self.oracle_address is not None:
            raise AgetuneError("--oracle-address needs --workers, --gpus or --role.")
        if self.supervised and self.role is None:
            raise AgetuneError("--supervised is set by agetune on the processes it starts, together with --role.")

        if self.role == "chief" and (self.workers is not None or self.gpus is not None):
            raise AgetuneError("--role chief runs the oracle alone. To run a chief and workers on this machine, "
                               "drop --role and pass --oracle-address 0.0.0.0:PORT if other machines join.")
        if self.role == "chief" and self.oracle_address is None:
            raise AgetuneError("--role chief needs --oracle-address PORT or HOST:PORT, where it listens for workers.")

        if self.role == "worker":
            if self.oracle_address is None:
                raise AgetuneError("--role worker needs --oracle-address HOST:PORT of the chief.")
            if self.worker_id is None:
                raise AgetuneError("--role worker needs --worker-id, unique in the search; start it again with "
                                   "the same id after a crash to rerun its trial.")
        elif self.worker_id is not None:
            raise AgetuneError("--worker-id is only for --role worker.")
        if self.worker_id is not None:
            check_worker_id(self.worker_id)


def check_worker_id(worker_id: str) -> None:
    """Raise AgetuneError unless `worker_id` can name a Keras Tuner worker and its state file."""
    if not WORKER_ID_PATTERN.fullmatch(worker_id):
        raise AgetuneError(f"invalid --worker-id {worker_id!r}: use up to 64 letters, digits, '.', '_' or '-', "
                           "starting with a letter or digit.")
    if "chief" in worker_id.lower():
        raise AgetuneError(f"invalid --worker-id {worker_id!r}: Keras Tuner treats any id containing 'chief' "
                           "as the oracle's process.")


@dataclass(frozen=True)
class WorkerSlot:
    """One worker process to start: its id, the GPUs it sees and, without GPUs, its CPU threads."""

    worker_id: str
    gpus: tuple[str, ...] = ()
    threads: int | None = None

    def environment(self) -> dict[str, str]:
        """Return the environment variables that pin the worker to its devices."""
        env = {"CUDA_VISIBLE_DEVICES": ",".join(self.gpus)}
        if self.threads is not None:
            env.update(cpu_thread_environment(self.threads))
        return env

    def describe(self) -> str:
        if self.gpus:
            return f"GPU {','.join(self.gpus)}"
        return f"CPU, {self.threads} thread{'s' if self.threads != 1 else ''}"


def cpu_thread_environment(threads: int) -> dict[str, str]:
    """Return the variables that cap TensorFlow's and OpenMP's thread pools at `threads`."""
    return {"TF_NUM_INTRAOP_THREADS": str(threads), "TF_NUM_INTEROP_THREADS": str(min(2, threads)),
            "OMP_NUM_THREADS": str(threads)}


def parse_gpu_selection(spec: str, count: int) -> list[int]:
    """Return the GPU indices that `--gpus` selects: `all`, a count (`2`) or indices (`0,2,3`, or `2,` for one)."""
    text = spec.strip().lower()
    if count == 0:
        raise AgetuneError(f"--gpus {spec}: TensorFlow sees no GPU on this machine. "
                           "Use --workers N to run CPU workers instead.")
    if text == "all":
        return list(range(count))
    if "," not in text:
        if not text.isdigit() or int(text) < 1:
            raise AgetuneError(f"invalid --gpus {spec!r}: pass all, a number of GPUs (2) or GPU indices (0,2,3).")
        wanted = int(text)
        if wanted > count:
            raise AgetuneError(f"--gpus {wanted} asks for more GPUs than the {count} TensorFlow sees.")
        return list(range(wanted))
    indices = []
    for part in (piece.strip() for piece in text.split(",")):
        if not part:
            continue
        if not part.isdigit():
            raise AgetuneError(f"invalid GPU index {part!r} in --gpus {spec!r}: use indices such as 0,2,3.")
        index = int(part)
        if index >= count:
            raise AgetuneError(f"GPU {index} in --gpus {spec!r} does not exist: TensorFlow sees {count} GPUs, "
                               f"numbered 0 to {count - 1}.")
        if index in indices:
            raise AgetuneError(f"GPU {index} appears twice in --gpus {spec!r}.")
        indices.append(index)
    if not indices:
        raise AgetuneError(f"invalid --gpus {spec!r}: no GPU index given.")
    return indices


def plan_gpu_workers(spec: str, gpus_per_trial: int, count: int, prefix: str = "worker",
                     visible_devices: str | None = None) -> list[WorkerSlot]:
    """Return one worker per group of `gpus_per_trial` GPUs from `--gpus spec`, out of `count` GPUs.

    `visible_devices` is this process's CUDA_VISIBLE_DEVICES: TensorFlow's
    GPU n is its n-th entry, so a worker pinned to GPU n gets that entry.
    """
    indices = parse_gpu_selection(spec, count)
    if len(indices) % gpus_per_trial:
        raise AgetuneError(f"{len(indices)} GPUs from --gpus {spec} do not split into groups of "
                           f"--gpus-per-trial {gpus_per_trial}; select a multiple of {gpus_per_trial} GPUs.")
    names = [str(index) for index in range(count)]
    if visible_devices:
        entries = [entry.strip() for entry in visible_devices.split(",") if entry.strip()]
        if len(entries) >= count:
            names = entries[:count]
    groups = [indices[start:start + gpus_per_trial] for start in range(0, len(indices), gpus_per_trial)]
    return [WorkerSlot(f"{prefix}{number}", gpus=tuple(names[index] for index in group))
            for number, group in enumerate(groups)]


def plan_cpu_workers(workers: int, cpu_count: int, prefix: str = "worker") -> list[WorkerSlot]:
    """Return `workers` CPU-only workers, each capped at an equal share of the `cpu_count` cores."""
    if workers > cpu_count:
        log.warning("%d workers on %d CPU cores: each gets 1 thread and they compete for the cores", workers,
                    cpu_count)
    threads = max(1, cpu_count // workers)
    return [WorkerSlot(f"{prefix}{number}", threads=threads) for number in range(workers)]


def available_cpus() -> int:
    """Return the number of CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def parse_oracle_address(text: str, default_host: str | None = None) -> tuple[str, int]:
    """Split `HOST:PORT` (or `[IPv6]:PORT`) into host and port; a bare PORT takes `default_host` when given."""
    value = text.strip()
    host, separator, port_text = value.rpartition(":")
    if not separator:
        host, port_text = "", value
    if not host:
        if default_host is None:
            raise AgetuneError(f"invalid --oracle-address {text!r}: pass HOST:PORT of the chief.")
        host = default_host
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise AgetuneError(f"invalid port in --oracle-address {text!r}: pass HOST:PORT with a port from 1 to 65535.")
    if ":" in host and not host.startswith("["):
        raise AgetuneError(f"invalid --oracle-address {text!r}: write an IPv6 host in brackets, as [::1]:8000.")
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    """True when `host` is reachable only from this machine."""
    bare = host.strip("[]")
    if bare == "localhost":
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False


def free_loopback_port() -> int:
    """Return a TCP port that is free on the loopback interface right now."""
    # NOTE: another process may take the port before the chief binds it. The chief then fails
    # with an error that names the address, and running the command again picks another port.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def warn_if_exposed(host: str, port: int) -> None:
    """Log a warning when the oracle listens on an address that other machines can reach."""
    if not is_loopback(host):
        log.warning("the oracle listens on %s:%d. Its gRPC service has no authentication: anyone who reaches "
                    "this port can read the search and report fake trials. Use it only on a trusted network.",
                    host, port)


# --- Child command lines -----------------------------------------------------------------------

# SearchOptions fields and how children get them. A field missing from both sets fails a
# test, so that a new option cannot silently stay behind in the parent.
CHILD_OPTION_FLAGS = {"space": "--space", "data": "--data", "run_dir": "--run", "tuner": "--tuner",
                      "weights": "--weights", "image_size": "--image-size", "max_epochs": "--max-epochs",
                      "max_trials": "--max-trials", "limit": "--limit", "mixed_precision": "--mixed-precision",
                      "xla": "--xla"}
CHILD_OPTIONS_NOT_PASSED = {
    "layout": "passed as --labels, --images, --file-column and --age-column",
    "overwrite": "the supervisor has already cleared the run folder",
    "verbose": "children print one line per epoch, Keras' choice when the output is not a terminal",
    "log_prefix": "each role sets its own",
}


def child_command(options: SearchOptions, run_dir: Path, role: str, oracle_address: str,
                  worker_id: str | None = None, gpus_per_trial: int = 1) -> list[str]:
    """Return the command line that runs one supervised part (`role`) of the search in `run_dir`."""
    command = [sys.executable, "-m", "tuner"]
    if logging.getLogger("tuner").isEnabledFor(logging.DEBUG):
        command.append("--verbose")
    command.append("search")
    values = {"run_dir": run_dir}
    for name, flag in CHILD_OPTION_FLAGS.items():
        value = values.get(name, getattr(options, name))
        if value is not None:
            command += [flag, str(value)]
    for key, value in options.layout.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    command += ["--role", role, "--oracle-address", oracle_address, "--supervised"]
    if worker_id is not None:
        command += ["--worker-id", worker_id]
    if gpus_per_trial != 1:
        command += ["--gpus-per-trial", str(gpus_per_trial)]
    return command


# --- Entry point -------------------------------------------------------------------------------


def run_parallel_search(options: SearchOptions, parallel: ParallelOptions) -> SearchSummary | None:
    """Run this process's part of a parallel search; return the summary where this process finished the search.

    Returns None for a worker, whose part ends when the oracle has no trial
    left. Raises AgetuneError on a fatal error, KeyboardInterrupt on SIGINT
    and SearchTerminated on SIGTERM (the latter two in a supervisor, after
    every child has stopped).
    """
    parallel.validate()
    if parallel.role == "chief":
        return run_chief(options, parallel)
    if parallel.role == "worker" and parallel.workers is None and parallel.gpus is None:
        run_worker(options, parallel)
        return None
    return supervise_search(options, parallel)


def plan_workers(parallel: ParallelOptions, count_gpus: Callable[[], int] | None = None) -> list[WorkerSlot]:
    """Return the worker processes that `--workers` or `--gpus` ask for on this machine.

    `count_gpus` returns the number of GPUs; TensorFlow's count by default.
    """
    count_gpus = count_gpus or gpu_count
    prefix = f"{parallel.worker_id}-" if parallel.worker_id else "worker"
    if parallel.gpus is not None:
        return plan_gpu_workers(parallel.gpus, parallel.gpus_per_trial, count_gpus(), prefix,
                                os.environ.get("CUDA_VISIBLE_DEVICES"))
    workers = parallel.workers or 1
    gpus = count_gpus()
    if gpus:
        log.warning("--workers runs CPU-only workers, but this machine has %d GPU(s); pass --gpus all to "
                    "train on them", gpus)
    return plan_cpu_workers(workers, available_cpus(), prefix)


def supervise_search(options: SearchOptions, parallel: ParallelOptions) -> SearchSummary | None:
    """Start the chief (unless this is `--role worker`) and the planned workers as children, and see them through."""
    slots = plan_workers(parallel)
    prepared = prepare_search(options)
    run = prepared.run
    with_chief = parallel.role is None

    if with_chief:
        if parallel.oracle_address is None:
            host, port = LOOPBACK, free_loopback_port()
        else:
            host, port = parse_oracle_address(parallel.oracle_address, default_host=LOOPBACK)
        # A chief that listens on every interface is still reached by local workers on loopback.
        connect_host = LOOPBACK if host.strip("[]") in ("0.0.0.0", "::") else host
        bind_address, connect_address = f"{host}:{port}", f"{connect_host}:{port}"
        status_path = run.path / "workers.json"
    else:
        host, port = parse_oracle_address(parallel.oracle_address or "")
        bind_address = connect_address = f"{host}:{port}"
        status_path = run.path / f"workers-{parallel.worker_id}.json"

    specs = []
    if with_chief:
        specs.append(ChildSpec(CHIEF_ID, "chief", child_command(options, run.path, "chief", bind_address),
                               {"CUDA_VISIBLE_DEVICES": "", **cpu_thread_environment(1)}, "oracle, no GPU"))
    for slot in slots:
        command = child_command(options, run.path, "worker", connect_address, slot.worker_id,
                                parallel.gpus_per_trial)
        specs.append(ChildSpec(slot.worker_id, "worker", command, slot.environment(), slot.describe()))

    batch = prepared.space.setting("data.batch_size") * parallel.gpus_per_trial
    log.info("parallel search: %d worker(s) (%s), oracle at %s, batch %d per trial", len(slots),
             "; ".join(f"{slot.worker_id}: {slot.describe()}" for slot in slots), bind_address, batch)
    started = None
    if with_chief:
        details = {"oracle": bind_address, "gpus_per_trial": parallel.gpus_per_trial, "global_batch_size": batch,
                   "workers": {slot.worker_id: slot.describe() for slot in slots}}
        started = mark_search_running(run, parallel=details)

    supervisor = Supervisor(run, specs, status_path, oracle_address=bind_address)
    try:
        outcome = supervisor.run()
    except (KeyboardInterrupt, SearchTerminated):
        if started is not None:
            run.update_state(status="interrupted", interrupted_at=_now(),
                             wall_seconds=round(time.monotonic() - started, 1))
        raise
    if outcome.error is not None:
        if started is not None:
            run.update_state(status="failed", finished_at=_now(), wall_seconds=round(time.monotonic() - started, 1))
        raise AgetuneError(f"{outcome.error} The search can be resumed: fix the cause and rerun the same command. "
                           f"The output of every process is in {run.log_path}.")
    if started is None:
        log.info("every worker on this machine has finished")
        return None
    return finish_search(run, started)


# --- The chief and worker roles ----------------------------------------------------------------


def run_chief(options: SearchOptions, parallel: ParallelOptions) -> SearchSummary | None:
    """Serve the oracle to the workers until every trial has ended; never trains.

    A chief started by hand (no supervisor) also writes state.json and, at the
    end, the best model, which a supervised chief leaves to its supervisor.
    """
    host, port = parse_oracle_address(parallel.oracle_address or "", default_host=LOOPBACK)
    # The chief builds the model once, to learn the search space; it must not take GPU memory.
    tf.config.set_visible_devices([], "GPU")
    os.environ.update({"KERASTUNER_TUNER_ID": CHIEF_ID, "KERASTUNER_ORACLE_IP": host,
                       "KERASTUNER_ORACLE_PORT": str(port)})
    supervised = parallel.supervised
    prepared = prepare_search(replace(options, log_prefix=None if supervised else f"[{CHIEF_ID}] "))
    run = prepared.run
    warn_if_exposed(host, port)
    started = None if supervised else mark_search_running(run, parallel={"role": "chief", "oracle": f"{host}:{port}"})
    tuner = build_tuner(prepared, mixed_precision=False, jit_compile=False)
    watcher = ChiefWatcher(tuner.oracle, prepared, exit_code=EXIT_CHILD_FATAL if supervised else 1)
    watcher.start()
    log.info("oracle listening on %s:%d; waiting for workers", host, port)
    try:
        # Keras Tuner's chief branch of search(): serves the oracle and returns when it is done.
        tuner.search(verbose=0)
    except RuntimeError as error:
        if "Failed to bind" not in str(error):
            raise
        raise AgetuneError(f"the oracle cannot listen on {host}:{port}: the port is taken or the address is "
                           "not one of this machine's. Pick another --oracle-address.") from None
    except KeyboardInterrupt:
        if started is not None:
            run.update_state(status="interrupted", interrupted_at=_now(),
                             wall_seconds=round(time.monotonic() - started, 1))
        raise
    log.info("every trial has ended; the oracle stops")
    if started is None:
        return None
    return finish_search(run, started)


def run_worker(options: SearchOptions, parallel: ParallelOptions) -> None:
    """Ask the chief for trials and train them until it has none left."""
    host, port = parse_oracle_address(parallel.oracle_address or "")
    worker_id = parallel.worker_id or ""
    # Without memory growth TensorFlow takes the whole GPU on start, before knowing what a trial needs.
    for gpu in tf.config.list_physical_devices("GPU"):
        tf.config.experimental.set_memory_growth(gpu, True)
    os.environ.update({"KERASTUNER_TUNER_ID": worker_id, "KERASTUNER_ORACLE_IP": host,
                       "KERASTUNER_ORACLE_PORT": str(port)})
    prepared = prepare_search(replace(options, log_prefix=None if parallel.supervised else f"[{worker_id}] "))
    strategy = trial_strategy(parallel.gpus_per_trial)
    mixed_precision = resolve_switch(options.mixed_precision, "mixed-precision")
    jit_compile = resolve_switch(options.xla, "xla")
    tuner = build_tuner(prepared, mixed_precision, jit_compile, distribution_strategy=strategy)
    pause_when_idle(tuner.oracle)
    batch = prepared.space.setting("data.batch_size") * parallel.gpus_per_trial
    log.info("worker %s: %s, batch %d, threads %s; asking the oracle at %s:%d for trials", worker_id,
             describe_devices(), batch, os.environ.get("TF_NUM_INTRAOP_THREADS", "all"), host, port)
    try:
        search_trials(prepared, tuner, options.verbose, batch_size=batch)
    except grpc.RpcError as error:
        raise oracle_error(prepared, error, f"{host}:{port}") from None
    log.info("worker %s: the oracle has no trial left", worker_id)


def trial_strategy(gpus_per_trial: int) -> tf.distribute.Strategy | None:
    """Return the MirroredStrategy over this worker's first `gpus_per_trial` GPUs, or None for one device."""
    if gpus_per_trial == 1:
        return None
    found = len(tf.config.list_physical_devices("GPU"))
    if found < gpus_per_trial:
        raise AgetuneError(f"--gpus-per-trial {gpus_per_trial} needs {gpus_per_trial} GPUs, but this worker sees "
                           f"{found} (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')!r}).")
    return tf.distribute.MirroredStrategy(devices=[f"/gpu:{index}" for index in range(gpus_per_trial)])


def describe_devices() -> str:
    gpus = tf.config.list_physical_devices("GPU")
    return f"{len(gpus)} GPU(s)" if gpus else "CPU only"


def pause_when_idle(client: Any) -> None:
    """Make a worker's oracle client wait `IDLE_PAUSE_SECONDS` after each IDLE trial before it asks again."""
    ask = client.create_trial

    def create_trial(tuner_id: str) -> keras_tuner.engine.trial.Trial:
        trial = ask(tuner_id)
        if trial.status == keras_tuner.engine.trial.TrialStatus.IDLE:
            time.sleep(IDLE_PAUSE_SECONDS)
        return trial

    client.create_trial = create_trial


def oracle_error(prepared: PreparedSearch, error: grpc.RpcError, address: str) -> AgetuneError:
    """Turn a failed call to the chief into the error a user can act on."""
    details = error.details() if hasattr(error, "details") else str(error)
    details = details or ""
    if "consecutive failures" in details:
        return failed_trials_error(prepared, details)
    code = error.code().name if hasattr(error, "code") else "error"
    first_line = details.strip().splitlines()[0] if details.strip() else "no details"
    return AgetuneError(f"the call to the oracle at {address} failed ({code}: {first_line}). Check that the chief "
                        "is running and that this machine reaches that address.")


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


# --- The supervisor ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ChildSpec:
    """A child process the supervisor keeps running: its name, command and extra environment."""

    name: str
    role: str
    command: list[str]
    environment: dict[str, str]
    description: str


@dataclass
class Child:
    """The supervisor's record of one child across its restarts."""

    spec: ChildSpec
    process: subprocess.Popen[str] | None = None
    reader: threading.Thread | None = None
    status: str = "starting"
    pids: list[int] = field(default_factory=list)
    restarts_in_a_row: int = 0
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
                 chief_exit_timeout: float = 90.0, poll_interval: float = 0.5) -> None:
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
                if time.monotonic() >= next_summary:
                    self.log_progress()
                    next_summary = time.monotonic() + self.summary_interval
                time.sleep(self.poll_interval)
        finally:
            self.stop()
            signal.signal(signal.SIGTERM, previous)
            self.write_status()
            self.log_progress()
            with self.output_lock:
                self.log_file.close()
                self.log_file = None

    def start(self, child: Child) -> None:
        child.trials_at_start = self.finished_trials(child.name)
        environment = {**os.environ, **child.spec.environment, "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(child.spec.command, env=environment, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, encoding="utf-8",
                                   errors="replace", bufsize=1, start_new_session=True,
                                   preexec_fn=_death_signal_hook())
        child.process = process
        child.status = "running"
        child.pids.append(process.pid)
        assert process.stdout is not None  # Popen was given stdout=PIPE
        child.reader = threading.Thread(target=self.forward, args=(child, process.stdout),
                                        name=f"output-{child.name}", daemon=True)
        child.reader.start()
        log.info("started %s (pid %d, %s)", child.name, process.pid, child.spec.description)

    def forward(self, child: Child, stream: IO[str]) -> None:
        """Copy a child's output line by line, prefixed with its name, to stderr and search.log."""
        prefix = f"[{child.name}] "
        for line in stream:
            text = line.rstrip("\n")
            if text.startswith("error: "):
                child.last_error = text[len("error: "):]
            with self.output_lock:
                sys.stderr.write(prefix + text + "\n")
                sys.stderr.flush()
                if self.log_file is not None:
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
        child.status = "failed"
        if code == EXIT_CHILD_FATAL:
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
                "restarts_in_a_row": child.restarts_in_a_row, "last_exit": child.last_exit,
                "retired_at": child.retired_at, "reason": child.reason,
            }
        atomic_write_json(self.status_path, {"supervisor_pid": os.getpid(), "oracle": self.oracle_address,
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
        parts.append(f"{_duration(time.monotonic() - self.started)} elapsed")
        log.info("progress: %s", " | ".join(parts))


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
        # The parent may have died between the fork and prctl; then no signal will ever come.
        if os.getppid() != parent:
            os._exit(1)

    return hook


def _raise_terminated(signum: int, frame: Any) -> None:
    raise SearchTerminated()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"
