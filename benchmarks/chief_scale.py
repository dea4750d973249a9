"""Benchmark one Keras Tuner chief oracle serving many workers on loopback.

For each worker count, the script starts a chief process running agetune's
`RandomSearchOracle`, which is Keras Tuner's with atomic, fsync'ed state
writes. A pool process imports Keras Tuner once and forks the workers, so
that 64 workers do not each pay TensorFlow's import on 2 cores. Workers set
up one after another (`--stagger`), then all start searching at the same
moment. Each trial sleeps `--trial-seconds` and returns a number: no
TensorFlow training. After these saturated runs, one paced run at the
largest worker count uses trials of `--paced-seconds`, varied by up to 50%
at random. `--oracle both` repeats every run with Keras Tuner's own
`RandomSearchOracle`, which writes its state without `fsync`.

Every worker times its own calls to the chief (create_trial, get_trial,
update_trial, end_trial, each a gRPC round trip) with `time.perf_counter`.
The figure is therefore the coordination a trial costs a worker, queueing
at the busy chief included, and not wall time. With near-zero trials the chief is
saturated, which is the worst case: with 1-minute trials the chief is idle
almost all the time, and a worker waits only for its own round trips.

The chief and the pool each run in their own process group, and both groups
are killed at the end, whatever happened.

    .venv/bin/python benchmarks/chief_scale.py --oracle both
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common

RPC_METHODS = ("create_trial", "get_trial", "update_trial", "end_trial")
#: The goal: coordination at most 1% of a 1-minute trial.
GOAL_SECONDS_PER_TRIAL = 0.6


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[16, 32, 64], help="worker counts to test")
    parser.add_argument("--trials-per-worker", type=int, default=5,
                        help="max_trials is this times the worker count (default 5)")
    parser.add_argument("--trial-seconds", type=float, default=0.005,
                        help="seconds each trial sleeps (default 0.005: a saturated chief)")
    parser.add_argument("--paced-seconds", type=float, default=10.0,
                        help="after the saturated runs, one run at the largest worker count with trials of this "
                             "many seconds, +-50%% at random, so the chief is not saturated (default 10; 0 skips)")
    parser.add_argument("--paced-trials-per-worker", type=int, default=3,
                        help="trials per worker in the paced run (default 3)")
    parser.add_argument("--stagger", type=float, default=0.1, help="seconds between worker set-ups (default 0.1)")
    parser.add_argument("--oracle", choices=["agetune", "keras-tuner", "both"], default="agetune",
                        help="agetune's RandomSearchOracle (atomic writes), Keras Tuner's, or both interleaved")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds one worker count may take")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 4 and 8 workers, 3 trials each")
    parser.add_argument("--json", type=str, default=None, help="also write the results to this JSON file")
    # Internal: how the script starts its own chief and pool processes.
    parser.add_argument("--role", choices=["main", "chief", "pool"], default="main", help=argparse.SUPPRESS)
    parser.add_argument("--directory", type=str, help=argparse.SUPPRESS)
    parser.add_argument("--max-trials", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--jitter", type=float, default=0.0, help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.quick:
        arguments.workers, arguments.trials_per_worker = [4, 8], 3
        arguments.paced_seconds, arguments.paced_trials_per_worker = 2.0, 2
    return arguments


# --------------------------------------------------------------------------
# Chief and worker processes


def make_tuner_class():
    import keras_tuner

    class SleepTuner(keras_tuner.engine.base_tuner.BaseTuner):
        """A tuner whose trial sleeps and returns a number, so only coordination is measured."""

        trial_seconds = 0.0
        jitter = 0.0
        rng = random.Random(0)

        def run_trial(self, trial, *args, **kwargs):
            time.sleep(self.trial_seconds * (1.0 + self.jitter * self.rng.uniform(-1.0, 1.0)))
            return float(trial.hyperparameters.get("x"))

    return SleepTuner


def make_hypermodel():
    import keras_tuner

    class SpaceOnly(keras_tuner.HyperModel):
        """A hypermodel that only declares the space: a continuous value, so the random oracle never runs out."""

        def build(self, hp):
            hp.Float("x", 0.0, 1.0)
            hp.Int("units", 1, 1024)

    return SpaceOnly()


def make_oracle(kind: str, max_trials: int):
    import keras_tuner

    objective = keras_tuner.Objective("score", direction="min")
    if kind == "agetune":
        from tuner.search import RandomSearchOracle
    else:
        RandomSearchOracle = keras_tuner.oracles.RandomSearchOracle
    return RandomSearchOracle(objective=objective, max_trials=max_trials, seed=0, max_consecutive_failed_trials=1000)


def run_chief(arguments: argparse.Namespace) -> None:
    """Serve the oracle until the main process sends SIGTERM, then write the chief's call timings."""
    directory = Path(arguments.directory)
    oracle = make_oracle(arguments.oracle, arguments.max_trials)
    service: dict[str, list[float]] = {name: [] for name in RPC_METHODS}
    for name in RPC_METHODS:
        original = getattr(oracle, name)

        def timed(*args, _original=original, _name=name, **kwargs):
            started = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                service[_name].append(time.perf_counter() - started)

        setattr(oracle, name, timed)

    def stop(signum, frame):
        (directory / "chief.json").write_text(json.dumps({"service_seconds": service}), encoding="utf-8")
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    tuner = make_tuner_class()(oracle=oracle, hypermodel=make_hypermodel(), directory=str(directory),
                               project_name="chief_scale")
    (directory / "chief.ready").write_text("ready", encoding="utf-8")
    tuner.search(verbose=0)
    # The server returns once every worker has received the stop status and no trial is running.
    stop(None, None)


def run_pool(arguments: argparse.Namespace) -> None:
    """Fork the workers one after another and wait for all of them."""
    import keras_tuner  # noqa: F401 - imported once here, shared by every forked worker

    count = arguments.workers[0]
    # Every worker starts searching at this moment, after the last one has set up.
    arguments.start_at = time.time() + count * arguments.stagger + 10.0
    children = []
    for index in range(count):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                run_worker(arguments, index)
                code = 0
            finally:
                os._exit(code)
        children.append(pid)
        time.sleep(arguments.stagger)
    failures = 0
    for pid in children:
        _, status = os.waitpid(pid, 0)
        failures += int(status != 0)
    sys.exit(1 if failures else 0)


def run_worker(arguments: argparse.Namespace, index: int) -> None:
    import keras_tuner

    worker_id = f"worker{index:03d}"
    os.environ["KERASTUNER_TUNER_ID"] = worker_id
    directory = Path(arguments.directory)
    tuner_class = make_tuner_class()
    tuner_class.trial_seconds = arguments.trial_seconds
    tuner_class.jitter = arguments.jitter
    tuner_class.rng = random.Random(index)
    # The local oracle is only a placeholder: BaseTuner wraps it in an OracleClient that calls the chief.
    tuner = tuner_class(oracle=keras_tuner.oracles.RandomSearchOracle(objective=keras_tuner.Objective(
        "score", direction="min"), max_trials=arguments.max_trials), hypermodel=make_hypermodel(),
        directory=str(directory), project_name="chief_scale")
    calls: dict[str, list[float]] = {name: [] for name in RPC_METHODS}
    for name in RPC_METHODS:
        original = getattr(tuner.oracle, name)

        def timed(*args, _original=original, _name=name, **kwargs):
            started = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                calls[_name].append(time.perf_counter() - started)

        setattr(tuner.oracle, name, timed)

    trials: list[str] = []
    original_begin = tuner.on_trial_begin

    def on_trial_begin(trial):
        trials.append(trial.trial_id)
        return original_begin(trial)

    tuner.on_trial_begin = on_trial_begin
    time.sleep(max(0.0, arguments.start_at - time.time()))
    started = time.perf_counter()
    tuner.search()
    record = {"worker": worker_id, "trials": len(trials), "calls": calls,
              "search_seconds": time.perf_counter() - started, "private_mib": common.private_mb()}
    (directory / "workers" / f"{worker_id}.json").write_text(json.dumps(record), encoding="utf-8")


# --------------------------------------------------------------------------
# The main process: start, measure, clean up


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def kill_group(process: subprocess.Popen, first_signal: int = signal.SIGTERM, grace: float = 5.0) -> None:
    """Signal a process group started by this script, then kill what is left of it."""
    try:
        os.killpg(process.pid, first_signal)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def run_one(arguments: argparse.Namespace, workers: int, oracle: str, trial_seconds: float, jitter: float,
            trials_per_worker: int) -> dict[str, Any]:
    """Run one chief and `workers` workers to the end and return the measurements."""
    directory = Path(tempfile.mkdtemp(prefix=f"agetune-bench-chief-{workers}-"))
    (directory / "workers").mkdir()
    port = free_port()
    max_trials = workers * trials_per_worker
    script = [sys.executable, str(Path(__file__).resolve())]
    common_arguments = ["--directory", str(directory), "--max-trials", str(max_trials), "--oracle", oracle,
                        "--trial-seconds", str(trial_seconds), "--jitter", str(jitter),
                        "--stagger", str(arguments.stagger)]
    environment = dict(os.environ, KERASTUNER_ORACLE_IP="127.0.0.1", KERASTUNER_ORACLE_PORT=str(port))
    log = open(directory / "processes.log", "w")
    chief = subprocess.Popen(script + ["--role", "chief"] + common_arguments,
                             env=dict(environment, KERASTUNER_TUNER_ID="chief"), start_new_session=True,
                             stdout=log, stderr=subprocess.STDOUT)
    pool = None
    try:
        deadline = time.monotonic() + arguments.timeout
        while not (directory / "chief.ready").exists():
            if chief.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the chief did not start; see {directory / 'processes.log'}")
            time.sleep(0.5)
        pool = subprocess.Popen(script + ["--role", "pool", "--workers", str(workers)] + common_arguments,
                                env=dict(environment, KERASTUNER_TUNER_ID="pool"), start_new_session=True,
                                stdout=log, stderr=subprocess.STDOUT)
        pool.wait(timeout=max(1.0, deadline - time.monotonic()))
        kill_group(chief)
        records = [json.loads(path.read_text()) for path in sorted((directory / "workers").glob("*.json"))]
        chief_path = directory / "chief.json"
        service = json.loads(chief_path.read_text())["service_seconds"] if chief_path.exists() else {}
        if pool.returncode != 0 or len(records) != workers:
            raise RuntimeError(f"{workers - len(records)} of {workers} workers failed; see "
                               f"{directory / 'processes.log'}")
    finally:
        if pool is not None:
            kill_group(pool, signal.SIGKILL, grace=1.0)
        kill_group(chief, signal.SIGKILL, grace=1.0)
        log.close()
    result = summarise(records, service, workers, oracle, directory)
    result["trial_seconds"] = trial_seconds
    return result


def summarise(records: list[dict[str, Any]], service: dict[str, list[float]], workers: int, oracle: str,
              directory: Path) -> dict[str, Any]:
    trials = [record["trials"] for record in records]
    total_trials = sum(trials)
    per_trial = [sum(sum(values) for values in record["calls"].values()) / record["trials"]
                 for record in records if record["trials"]]
    coordination = sum(sum(sum(values) for values in record["calls"].values()) for record in records)
    calls = {name: [value for record in records for value in record["calls"][name]] for name in RPC_METHODS}
    search = max(record["search_seconds"] for record in records)
    result = {
        "workers": workers, "oracle": oracle, "trials": total_trials,
        "trials_min": min(trials), "trials_max": max(trials),
        "coordination_per_trial_mean": coordination / total_trials,
        "coordination_per_trial_median_worker": common.median(per_trial),
        "coordination_per_trial_max_worker": max(per_trial),
        "call_median_ms": {name: 1000 * common.median(values) for name, values in calls.items()},
        "chief_service_ms_per_trial": 1000 * sum(sum(values) for values in service.values()) / max(1, total_trials),
        "search_seconds": search, "trials_per_second": total_trials / search,
        "worker_private_mib_median": common.median([record["private_mib"] for record in records]),
    }
    for path in sorted(directory.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    directory.rmdir()
    return result


def main() -> None:
    arguments = parse_arguments()
    if arguments.role == "chief":
        run_chief(arguments)
        return
    if arguments.role == "pool":
        run_pool(arguments)
        return

    load = common.LoadLog()
    facts = common.machine_facts(tensorflow=False)
    common.print_header("chief scale", vars(arguments), facts)
    oracles = ["agetune", "keras-tuner"] if arguments.oracle == "both" else [arguments.oracle]
    runs = [(workers, oracle, arguments.trial_seconds, 0.0, arguments.trials_per_worker)
            for workers in arguments.workers for oracle in oracles]
    if arguments.paced_seconds:
        runs += [(max(arguments.workers), oracle, arguments.paced_seconds, 0.5, arguments.paced_trials_per_worker)
                 for oracle in oracles]
    results = []
    for workers, oracle, trial_seconds, jitter, trials_per_worker in runs:
        result = run_one(arguments, workers, oracle, trial_seconds, jitter, trials_per_worker)
        results.append(result)
        print(f"  {workers} workers, {oracle} oracle, {trial_seconds} s trials: {result['trials']} trials, "
              f"{result['coordination_per_trial_mean']:.3f} s coordination per trial, "
              f"trials per worker {result['trials_min']}-{result['trials_max']}", flush=True)
    load.finish()

    print()
    print("max_trials = trials per worker x workers; paced trials vary +-50% at random")
    headers = ["workers", "oracle", "trial s", "trials", "per worker min-max", "coordination s/trial (mean)",
               "worst worker s/trial", "create ms", "get ms", "update ms", "end ms", "chief ms/trial",
               "trials/s", "share of 60 s trial"]
    rows = []
    for result in results:
        median_ms = result["call_median_ms"]
        rows.append([result["workers"], result["oracle"], result["trial_seconds"], result["trials"],
                     f"{result['trials_min']}-{result['trials_max']}", result["coordination_per_trial_mean"],
                     result["coordination_per_trial_max_worker"], median_ms["create_trial"],
                     median_ms["get_trial"], median_ms["update_trial"], median_ms["end_trial"],
                     result["chief_service_ms_per_trial"], result["trials_per_second"],
                     f"{100 * result['coordination_per_trial_mean'] / 60:.2f}%"])
    print(common.format_table(headers, rows))
    print("(per-call columns are medians over all calls of all workers)")
    print()
    for line in load.lines():
        print(line)
    common.write_json(arguments.json, {"arguments": vars(arguments), "machine": facts, "load_start": load.start,
                                       "load_end": load.end, "results": results})


if __name__ == "__main__":
    main()
