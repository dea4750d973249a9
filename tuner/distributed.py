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

Restarts and retirement of crashed workers: see `tuner.supervisor`.

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
an error that a restart cannot fix, `EXIT_RECYCLE` after its
`--max-trials-per-process` trials (the supervisor starts a fresh process with
the same id), and 130 when interrupted; any other exit counts as a crash.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import tensorflow as tf

# The chief and supervisor names are re-exported too: the CLI and the tests import them from here.
from tuner.chief import IDLE_PAUSE_SECONDS, ChiefWatcher, pause_when_idle, release_worker
from tuner.errors import AgetuneError
from tuner.logs import RESTART_COUNT_VARIABLE, is_first_start
from tuner.run import RunFolder
from tuner.search import (PreparedSearch, SearchOptions, SearchSummary, build_tuner, failed_trials_error,
                          finish_search, gpu_count, mark_search_running, prepare_search, resolve_switch,
                          search_elapsed, search_trials)
from tuner.supervisor import (EXIT_CHILD_FATAL, EXIT_RECYCLE, MAX_RESTARTS, SUMMARY_INTERVAL, Child, ChildSpec,
                              SearchTerminated, Supervisor, SupervisorOutcome, _now, describe_exit)

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
CHIEF_ID = "chief"
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
# Worker ids name files in the run folder (tuner/<id>.json), and Keras Tuner treats any id
# that contains "chief" as the chief.
WORKER_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


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
    # Trials a supervised worker trains before it exits for a fresh process; 0 keeps one process throughout.
    max_trials_per_process: int = 0

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
        if self.max_trials_per_process < 0:
            raise AgetuneError(f"--max-trials-per-process must be 0 (one process throughout) or more, "
                               f"got {self.max_trials_per_process}.")

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
    "verbose": "each child picks Keras' default: a progress bar on a terminal, one line per epoch otherwise",
    "log_prefix": "each role sets its own",
    "log_setup": "each role sets its own",
}


def child_command(options: SearchOptions, run_dir: Path, role: str | None = None, oracle_address: str | None = None,
                  worker_id: str | None = None, gpus_per_trial: int = 1, max_trials_per_process: int = 0) -> list[str]:
    """Return the command line that runs one supervised part of the search in `run_dir`.

    `role` is chief or worker in a parallel search, and None for the trial
    process of a one-process search (`tuner.trial_process`).
    """
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
    if role is not None:
        command += ["--role", role]
    if oracle_address is not None:
        command += ["--oracle-address", oracle_address]
    command.append("--supervised")
    if max_trials_per_process:
        command += ["--max-trials-per-process", str(max_trials_per_process)]
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
                                parallel.gpus_per_trial, parallel.max_trials_per_process)
        specs.append(ChildSpec(slot.worker_id, "worker", command, slot.environment(), slot.describe()))

    batch = prepared.space.setting("data.batch_size") * parallel.gpus_per_trial
    log.info("parallel search: %d worker(s) (%s), oracle at %s, batch %d per trial", len(slots),
             "; ".join(f"{slot.worker_id}: {slot.describe()}" for slot in slots), bind_address, batch)
    started = None
    if with_chief:
        details = {"oracle": bind_address, "gpus_per_trial": parallel.gpus_per_trial, "global_batch_size": batch,
                   "workers": {slot.worker_id: slot.describe() for slot in slots}}
        started = mark_search_running(run, parallel=details)

    run_supervisor(Supervisor(run, specs, status_path, oracle_address=bind_address), run, started)
    if started is None:
        log.info("every worker on this machine has finished")
        return None
    return finish_search(run, started)


def run_supervisor(supervisor: Supervisor, run: RunFolder, started: float | None) -> None:
    """Run `supervisor` until its children are done, and record an interruption or failure in state.json.

    `started` is the search's start as `mark_search_running` returned it, or
    None in a process that did not start the search and leaves state.json
    alone. Raises AgetuneError when a child stopped the search, and re-raises
    KeyboardInterrupt and SearchTerminated.
    """
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
    # A worker that the supervisor started before has shown the data summary and the warnings already.
    prepared = prepare_search(replace(options, log_prefix=None if parallel.supervised else f"[{worker_id}] ",
                                      log_setup=is_first_start()))
    strategy = trial_strategy(parallel.gpus_per_trial)
    mixed_precision = resolve_switch(options.mixed_precision, "mixed-precision")
    jit_compile = resolve_switch(options.xla, "xla")
    tuner = build_tuner(prepared, mixed_precision, jit_compile, distribution_strategy=strategy)
    if parallel.supervised and parallel.max_trials_per_process:
        # Only a supervisor starts a worker again after it exits for a fresh process.
        tuner.limit_trials_per_process(parallel.max_trials_per_process)
    tuner.search_started = time.monotonic() - search_elapsed(prepared.run)
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
