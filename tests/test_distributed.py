"""Parallel trials: GPU and CPU plans, option checks, the supervisor, the release of dead workers, end to end."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import keras_tuner
import pandas as pd
import pytest
import typer
from keras_tuner.src.distribute import oracle_chief
from keras_tuner.src.engine import oracle as oracle_module
from typer.testing import CliRunner

from tests.processes import default_sigint, is_alive
from tuner import distributed
# TINY_SPACE has two one-epoch trials: each of the two workers takes one. An end-to-end search
# then takes 2 to 5 minutes on 2 CPU cores, depending on their other load, almost all of it
# TensorFlow start-up, tracing and saving the best model.
from tests.tiny_run import TINY_SPACE
from tuner.cli import app
from tuner.data import DatasetLayout
from tuner.distributed import (EXIT_CHILD_FATAL, EXIT_RECYCLE, RESTART_COUNT_VARIABLE, ChiefWatcher, ChildSpec,
                               ParallelOptions, Supervisor, child_command, parse_gpu_selection, parse_oracle_address, plan_cpu_workers,
                               plan_gpu_workers, release_worker)
from tuner.errors import AgetuneError
from tuner.supervisor import ABSL_NOTICE, native_log_key
from tuner.run import RunFolder, atomic_write_json, read_trial_records, read_trials
from tuner.search import RandomSearchOracle, SearchOptions, build_tuner, prepare_search
from tuner.synthetic import make_synthetic_faces

REPO = Path(__file__).resolve().parents[1]



# --- GPU and CPU plans ---------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "count", "expected"), [
    ("all", 4, [0, 1, 2, 3]),
    ("ALL", 1, [0]),
    ("2", 4, [0, 1]),
    ("4", 4, [0, 1, 2, 3]),
    ("0,2,3", 4, [0, 2, 3]),
    ("3,1", 4, [3, 1]),
    ("2,", 4, [2]),
    (" 1 , 2 ", 4, [1, 2]),
])
def test_gpu_selection_valid(spec: str, count: int, expected: list[int]) -> None:
    assert parse_gpu_selection(spec, count) == expected


@pytest.mark.parametrize(("spec", "count", "message"), [
    ("all", 0, "TensorFlow sees no GPU"),
    ("2", 0, "TensorFlow sees no GPU"),
    ("five", 4, "invalid --gpus 'five'"),
    ("0", 4, "invalid --gpus '0'"),
    ("-1", 4, "invalid --gpus '-1'"),
    ("5", 4, "--gpus 5 asks for more GPUs than the 4"),
    ("0,4", 4, "GPU 4 in --gpus '0,4' does not exist: TensorFlow sees 4 GPUs, numbered 0 to 3"),
    ("0,0", 4, "GPU 0 appears twice"),
    ("0,x", 4, "invalid GPU index 'x'"),
    (",", 4, "no GPU index given"),
])
def test_gpu_selection_invalid(spec: str, count: int, message: str) -> None:
    with pytest.raises(AgetuneError, match=re.escape(message)):
        parse_gpu_selection(spec, count)


def test_gpu_plan_one_worker_per_gpu() -> None:
    slots = plan_gpu_workers("0,2,3", 1, count=4)

    assert [slot.worker_id for slot in slots] == ["worker0", "worker1", "worker2"]
    assert [slot.gpus for slot in slots] == [("0",), ("2",), ("3",)]
    assert slots[1].environment() == {"CUDA_VISIBLE_DEVICES": "2"}
    assert slots[1].threads is None


def test_gpu_plan_groups_per_trial() -> None:
    slots = plan_gpu_workers("all", 2, count=4)

    assert [slot.gpus for slot in slots] == [("0", "1"), ("2", "3")]
    assert slots[1].environment() == {"CUDA_VISIBLE_DEVICES": "2,3"}
    assert slots[0].describe() == "GPU 0,1"


def test_gpu_plan_maps_visible_devices() -> None:
    # TensorFlow numbers the GPUs of CUDA_VISIBLE_DEVICES=5,7 as 0 and 1; the children must get 5 and 7.
    slots = plan_gpu_workers("all", 1, count=2, visible_devices="5,7")

    assert [slot.gpus for slot in slots] == [("5",), ("7",)]


def test_gpu_plan_rejects_uneven_groups() -> None:
    with pytest.raises(AgetuneError, match=re.escape("3 GPUs from --gpus 0,1,2 do not split into groups of "
                                                     "--gpus-per-trial 2")):
        plan_gpu_workers("0,1,2", 2, count=4)


def test_gpu_plan_prefix_for_remote_workers() -> None:
    slots = plan_gpu_workers("2", 1, count=2, prefix="box2-")

    assert [slot.worker_id for slot in slots] == ["box2-0", "box2-1"]


def test_cpu_plan_shares_threads() -> None:
    slots = plan_cpu_workers(2, cpu_count=16)

    assert [slot.worker_id for slot in slots] == ["worker0", "worker1"]
    assert slots[0].environment() == {"CUDA_VISIBLE_DEVICES": "", "TF_NUM_INTRAOP_THREADS": "8",
                                      "TF_NUM_INTEROP_THREADS": "2", "OMP_NUM_THREADS": "8"}


def test_cpu_plan_more_workers_than_cores(caplog: pytest.LogCaptureFixture) -> None:
    slots = plan_cpu_workers(3, cpu_count=2)

    assert [slot.threads for slot in slots] == [1, 1, 1]
    assert slots[2].environment()["TF_NUM_INTEROP_THREADS"] == "1"
    assert "3 workers on 2 CPU cores" in caplog.text


def test_plan_workers_injected_gpu_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    parallel = ParallelOptions(gpus="all", gpus_per_trial=2)

    slots = distributed.plan_workers(parallel, count_gpus=lambda: 8)

    assert [slot.gpus for slot in slots] == [("0", "1"), ("2", "3"), ("4", "5"), ("6", "7")]


# --- Addresses and options -------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("10.0.0.5:8000", ("10.0.0.5", 8000)),
    ("gpu-box.local:65535", ("gpu-box.local", 65535)),
    ("[::1]:8000", ("[::1]", 8000)),
    ("8000", ("127.0.0.1", 8000)),
    (":8000", ("127.0.0.1", 8000)),
])
def test_oracle_address_valid(text: str, expected: tuple[str, int]) -> None:
    assert parse_oracle_address(text, default_host="127.0.0.1") == expected


@pytest.mark.parametrize(("text", "message"), [
    ("host:0", "invalid port"),
    ("host:70000", "invalid port"),
    ("host:http", "invalid port"),
    ("::1:8000", "IPv6 host in brackets"),
])
def test_oracle_address_invalid(text: str, message: str) -> None:
    with pytest.raises(AgetuneError, match=message):
        parse_oracle_address(text, default_host="127.0.0.1")


def test_oracle_address_worker_needs_host() -> None:
    with pytest.raises(AgetuneError, match="pass HOST:PORT of the chief"):
        parse_oracle_address("8000")


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("localhost", True), ("[::1]", True), ("0.0.0.0", False), ("10.1.2.3", False),
    ("gpu-box", False),
])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert distributed.is_loopback(host) is loopback


def test_exposed_address_warns(caplog: pytest.LogCaptureFixture) -> None:
    distributed.warn_if_exposed("127.0.0.1", 8000)
    assert caplog.text == ""

    distributed.warn_if_exposed("0.0.0.0", 8000)
    assert "no authentication" in caplog.text


@pytest.mark.parametrize(("options", "message"), [
    (ParallelOptions(workers=2, gpus="all"), "not both"),
    (ParallelOptions(workers=0), "--workers must be 1 or more"),
    (ParallelOptions(gpus="all", gpus_per_trial=0), "--gpus-per-trial must be 1 or more"),
    (ParallelOptions(gpus_per_trial=2), "--gpus-per-trial needs --gpus"),
    (ParallelOptions(role="boss"), "--role must be chief or worker"),
    (ParallelOptions(role="chief"), "--role chief needs --oracle-address"),
    (ParallelOptions(role="chief", workers=2, oracle_address="8000"), "--role chief runs the oracle alone"),
    (ParallelOptions(role="worker", worker_id="w1"), "--role worker needs --oracle-address"),
    (ParallelOptions(role="worker", oracle_address="h:1"), "--role worker needs --worker-id"),
    (ParallelOptions(worker_id="w1", workers=2), "--worker-id is only for --role worker"),
    (ParallelOptions(oracle_address="h:1"), "--oracle-address needs --workers, --gpus or --role"),
    (ParallelOptions(role="worker", oracle_address="h:1", worker_id="my-chief"), "containing 'chief'"),
    (ParallelOptions(role="worker", oracle_address="h:1", worker_id="a/b"), "invalid --worker-id 'a/b'"),
    (ParallelOptions(max_trials_per_process=-1), "--max-trials-per-process must be 0 (one process throughout) or more"),
])
def test_parallel_options_invalid(options: ParallelOptions, message: str) -> None:
    with pytest.raises(AgetuneError, match=re.escape(message)):
        options.validate()


def test_parallel_options_valid() -> None:
    for options in [ParallelOptions(), ParallelOptions(workers=2), ParallelOptions(gpus="0,1", gpus_per_trial=2),
                    ParallelOptions(role="chief", oracle_address="0.0.0.0:8000"),
                    ParallelOptions(role="worker", oracle_address="h:1", worker_id="box2", gpus="all"),
                    ParallelOptions(role="worker", oracle_address="h:1", worker_id="box2", gpus_per_trial=2),
                    ParallelOptions(max_trials_per_process=0), ParallelOptions(workers=2, max_trials_per_process=5)]:
        options.validate()

    assert ParallelOptions().enabled is False
    assert ParallelOptions(workers=1).enabled is True


def test_cli_rejects_workers_and_gpus() -> None:
    result = CliRunner().invoke(app, ["search", "--workers", "2", "--gpus", "all"])

    assert result.exit_code == 1
    assert "pass either --workers (CPU workers) or --gpus" in result.output


def test_cli_gpus_without_gpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                              make_faces: Callable[..., DatasetLayout]) -> None:
    monkeypatch.setattr(distributed, "gpu_count", lambda: 0)

    # The plan fails before any photo is decoded or the run folder is made.
    result = CliRunner().invoke(app, ["search", "--gpus", "all", "--data", str(make_faces().root),
                                      "--run", str(tmp_path / "run")])

    assert result.exit_code == 1
    assert "TensorFlow sees no GPU" in result.output
    assert not (tmp_path / "run").exists()


def test_child_command_passes_every_option(tmp_path: Path) -> None:
    handled = set(distributed.CHILD_OPTION_FLAGS) | set(distributed.CHILD_OPTIONS_NOT_PASSED)
    assert {item.name for item in dataclasses.fields(SearchOptions)} == handled

    options = SearchOptions(space="tiny.toml", data=Path("faces"), layout={"labels": "ages.csv", "file_column": "f"},
                            run_dir=Path("ignored"), tuner="random", weights="none", image_size=32, max_epochs=3,
                            max_trials=4, limit=40, overwrite=True, mixed_precision="off", xla="on", verbose=0)
    command = child_command(options, tmp_path / "run", "worker", "127.0.0.1:9000", "worker1", gpus_per_trial=2,
                            max_trials_per_process=3)

    assert command[:3] == [sys.executable, "-m", "tuner"]
    assert "--overwrite" not in command
    search_command = typer.main.get_command(app).commands["search"]  # type: ignore[attr-defined]
    context = search_command.make_context("search", command[command.index("search") + 1:])
    params = context.params
    assert params["space"] == "tiny.toml"
    assert params["data"] == Path("faces")
    assert params["labels"] == "ages.csv"
    assert params["file_column"] == "f"
    assert params["run"] == tmp_path / "run"
    assert (params["tuner"], params["weights"], params["image_size"]) == ("random", "none", 32)
    assert (params["max_epochs"], params["max_trials"], params["limit"]) == (3, 4, 40)
    assert (params["mixed_precision"], params["xla"]) == ("off", "on")
    assert (params["role"], params["oracle_address"], params["worker_id"]) == ("worker", "127.0.0.1:9000", "worker1")
    assert params["gpus_per_trial"] == 2
    assert params["supervised"] is True
    assert params["overwrite"] is False
    assert params["max_trials_per_process"] == 3


def test_child_command_of_trial_process(tmp_path: Path) -> None:
    options = SearchOptions(space="quick", run_dir=Path("ignored"))
    command = child_command(options, tmp_path / "run", max_trials_per_process=1)

    assert command[3:] == ["search", "--space", "quick", "--run", str(tmp_path / "run"), "--mixed-precision",
                           "auto", "--xla", "auto", "--supervised", "--max-trials-per-process", "1"]


# --- The chief's side --------------------------------------------------------------------------------


def make_oracle(tmp_path: Path, retries: int = 0, failures_in_a_row: int = 3) -> keras_tuner.Oracle:
    oracle = RandomSearchOracle(objective=keras_tuner.Objective("val_mae", "min"), max_trials=4, seed=1,
                                max_retries_per_trial=retries, max_consecutive_failed_trials=failures_in_a_row)
    oracle._set_project_dir(str(tmp_path), "tuner")
    oracle.hyperparameters.Choice("learning_rate", [0.1, 0.01, 0.001, 0.0001])
    return oracle


def test_release_fails_dead_workers_trial(tmp_path: Path) -> None:
    oracle = make_oracle(tmp_path)
    lost = oracle.create_trial("worker0")
    oracle.create_trial("worker1")

    trial_id, failure = release_worker(oracle, "worker0", "worker worker0 exited 3 times in a row")

    assert trial_id == lost.trial_id
    assert failure is None
    assert oracle.trials[lost.trial_id].status == "FAILED"
    assert oracle.trials[lost.trial_id].message == "worker worker0 exited 3 times in a row"
    assert "worker0" not in oracle.ongoing_trials
    assert "worker0" not in oracle.tuner_ids
    assert not oracle_chief.exit_chief(oracle)  # worker1 still runs its trial
    saved = json.loads((tmp_path / "tuner" / f"trial_{lost.trial_id}" / "trial.json").read_text())
    assert saved["status"] == "FAILED"


def test_release_lets_chief_exit(tmp_path: Path) -> None:
    oracle = make_oracle(tmp_path)
    oracle.create_trial("worker0")

    release_worker(oracle, "worker0", "died")

    assert oracle_chief.exit_chief(oracle)


def test_release_requeues_with_retries(tmp_path: Path) -> None:
    oracle = make_oracle(tmp_path, retries=1)
    lost = oracle.create_trial("worker0")

    release_worker(oracle, "worker0", "died")

    assert oracle.trials[lost.trial_id].status == "INVALID"
    retried = oracle.create_trial("worker1")
    assert retried.trial_id == lost.trial_id
    assert len(oracle.trials) == 1


def test_release_without_trial(tmp_path: Path) -> None:
    oracle = make_oracle(tmp_path)
    oracle.tuner_ids.add("worker0")

    assert release_worker(oracle, "worker0", "died") == (None, None)
    assert oracle.tuner_ids == set()


def test_release_failure_limit_frees_lock(tmp_path: Path) -> None:
    oracle = make_oracle(tmp_path, failures_in_a_row=1)
    oracle.create_trial("worker0")

    trial_id, failure = release_worker(oracle, "worker0", "died")

    assert trial_id is not None
    assert failure is not None
    assert "Number of consecutive failures exceeded the limit of 1" in failure
    assert not oracle_module.LOCKS[oracle].locked()


def test_watcher_reads_only_fresh_retirements(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "run")
    watcher = ChiefWatcher(make_oracle(tmp_path), SimpleNamespace(run=run), exit_code=3)  # type: ignore[arg-type]
    now = watcher.started_at
    atomic_write_json(run.path / "workers.json", {"children": {
        "chief": {"role": "chief", "status": "finished"},
        "worker0": {"role": "worker", "status": "retired", "retired_at": now + 1, "reason": "crashed 3 times"},
        "worker1": {"role": "worker", "status": "running", "retired_at": None},
        "worker2": {"role": "worker", "status": "retired", "retired_at": now - 60, "reason": "earlier session"},
    }})
    atomic_write_json(run.path / "workers-box2.json", {"children": {
        "box2-0": {"role": "worker", "status": "retired", "retired_at": now + 2, "reason": "remote crash"},
    }})

    assert watcher.retired_workers() == [("box2-0", "remote crash"), ("worker0", "crashed 3 times")]
    watcher.released.add("worker0")
    assert watcher.retired_workers() == [("box2-0", "remote crash")]


def test_watcher_release_writes_record(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "run")
    oracle = make_oracle(tmp_path)
    lost = oracle.create_trial("worker0")
    watcher = ChiefWatcher(oracle, SimpleNamespace(run=run), exit_code=3)  # type: ignore[arg-type]

    watcher.release("worker0", "worker worker0 exited 3 times in a row")

    assert watcher.released == {"worker0"}
    record = read_trial_records(run)[lost.trial_id]
    assert record["worker"] == "worker0"
    assert record["status"] == "FAILED"
    assert record["error"] == "worker worker0 exited 3 times in a row"


def test_idle_answer_pauses_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    pauses: list[float] = []
    monkeypatch.setattr(distributed.time, "sleep", pauses.append)
    answers = iter(["IDLE", "RUNNING"])

    class Client:
        def create_trial(self, tuner_id: str) -> keras_tuner.engine.trial.Trial:
            return keras_tuner.engine.trial.Trial(keras_tuner.HyperParameters(), trial_id="0", status=next(answers))

    client = Client()
    distributed.pause_when_idle(client)

    assert client.create_trial("worker0").status == "IDLE"
    assert pauses == [distributed.IDLE_PAUSE_SECONDS]
    assert client.create_trial("worker0").status == "RUNNING"
    assert pauses == [distributed.IDLE_PAUSE_SECONDS]


# --- The supervisor, with small Python scripts as children -----------------------------------------------


def script(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


SLEEPER = script("""
    import time
    print("up", flush=True)
    time.sleep(300)
""")


def fast_supervisor(run: RunFolder, specs: list[ChildSpec], **overrides: float) -> Supervisor:
    settings = {"restart_delay": 0.1, "summary_interval": 3600.0, "stop_timeout": 5.0, "chief_exit_timeout": 1.0,
                "poll_interval": 0.05}
    settings.update(overrides)
    return Supervisor(run, specs, run.path / "workers.json", **settings)  # type: ignore[arg-type]


def read_status(run: RunFolder) -> dict:
    return json.loads((run.path / "workers.json").read_text())


def test_supervisor_finishes_and_forwards(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "run")
    chief = script("""
        import time
        time.sleep(0.5)
        print("oracle done", flush=True)
    """)
    worker = script("""
        import os
        print("trained on", os.environ["CUDA_VISIBLE_DEVICES"] or "cpu", flush=True)
    """)
    specs = [ChildSpec("chief", "chief", chief, {}, "oracle"), ChildSpec("worker0", "worker", worker,
                                                                          {"CUDA_VISIBLE_DEVICES": "3"}, "GPU 3")]

    outcome = fast_supervisor(run, specs).run()

    assert outcome.error is None
    log_text = run.log_path.read_text()
    assert "[chief] oracle done" in log_text
    assert "[worker0] trained on 3" in log_text
    status = read_status(run)
    assert status["supervisor_pid"] == os.getpid()
    assert status["children"]["chief"]["status"] == "finished"
    assert status["children"]["worker0"]["status"] == "finished"
    assert status["children"]["worker0"]["devices"] == "GPU 3"


def test_supervisor_restarts_then_retires(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "run")
    crasher = script("""
        import os
        print("worker id", os.environ.get("WORKER_TAG"), flush=True)
        os._exit(1)
    """)
    specs = [ChildSpec("chief", "chief", SLEEPER, {}, "oracle"),
             ChildSpec("worker0", "worker", crasher, {"WORKER_TAG": "w0"}, "CPU")]

    outcome = fast_supervisor(run, specs, max_restarts=2).run()

    assert outcome.error is not None
    assert "no worker is left (worker0 retired after crashes)" in outcome.error
    worker = read_status(run)["children"]["worker0"]
    assert worker["status"] == "retired"
    assert len(worker["pids"]) == 3
    assert worker["reason"] == "worker worker0 exited 3 times in a row while running this trial, last with exit code 1"
    assert isinstance(worker["retired_at"], float)
    assert run.log_path.read_text().count("[worker0] worker id w0") == 3
    chief = read_status(run)["children"]["chief"]
    assert chief["status"] == "stopped"
    assert not is_alive(chief["pid"])


def test_supervisor_resets_restarts_after_progress(tmp_path: Path) -> None:
    # Each start records one finished trial, then crashes; the fourth start finishes. With one
    # restart allowed in a row, only the reset after each finished trial keeps the worker going.
    run = RunFolder(tmp_path / "run")
    worker = script(f"""
        import json, os, pathlib
        trials = pathlib.Path({str(run.trials_dir)!r})
        trials.mkdir(parents=True, exist_ok=True)
        done = len(list(trials.glob("*.json")))
        (trials / f"{{done}}.json").write_text(json.dumps({{"trial_id": str(done), "worker": "worker0"}}))
        os._exit(0 if done == 3 else 1)
    """)
    specs = [ChildSpec("worker0", "worker", worker, {}, "CPU")]

    outcome = fast_supervisor(run, specs, max_restarts=1).run()

    assert outcome.error is None
    assert len(read_trial_records(run)) == 4
    status = read_status(run)["children"]["worker0"]
    assert status["status"] == "finished"
    assert len(status["pids"]) == 4


def test_supervisor_starts_fresh_worker_after_recycle(tmp_path: Path) -> None:
    # Each start prints the restart count it was given, then exits for a fresh process until the third start.
    run = RunFolder(tmp_path / "run")
    worker = script(f"""
        import os, sys
        count = int(os.environ["{RESTART_COUNT_VARIABLE}"])
        print("restart count", count, flush=True)
        sys.exit(0 if count == 2 else {EXIT_RECYCLE})
    """)
    specs = [ChildSpec("worker0", "worker", worker, {}, "CPU")]

    # A crash would wait a minute before its restart; a fresh process starts at once.
    outcome = fast_supervisor(run, specs, max_restarts=0, restart_delay=60.0).run()

    assert outcome.error is None
    log_text = run.log_path.read_text()
    assert [line.split("] ", 1)[1] for line in log_text.splitlines() if "restart count" in line] == [
        "restart count 0", "restart count 1", "restart count 2"]
    status = read_status(run)["children"]["worker0"]
    assert status["status"] == "finished"
    assert len(status["pids"]) == 3
    assert status["restarts_in_a_row"] == 0
    assert status["last_exit"] == "exit code 0"


def test_supervisor_recycle_after_chief_ends(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "run")
    chief = script("print('oracle done', flush=True)")
    worker = script(f"""
        import sys, time
        time.sleep(1)
        sys.exit({EXIT_RECYCLE})
    """)
    specs = [ChildSpec("chief", "chief", chief, {}, "oracle"), ChildSpec("worker0", "worker", worker, {}, "CPU")]

    outcome = fast_supervisor(run, specs, chief_exit_timeout=30.0).run()

    assert outcome.error is None
    status = read_status(run)["children"]["worker0"]
    assert status["status"] == "finished"
    assert len(status["pids"]) == 1


def test_supervisor_child_with_own_output(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    # Two starts, each with TensorFlow's start-up notices (other times and thread ids each time).
    run = RunFolder(tmp_path / "run")
    worker = script(f"""
        import os, sys
        count = int(os.environ["{RESTART_COUNT_VARIABLE}"])
        print("progress bar here", flush=True)
        print({ABSL_NOTICE!r}, file=sys.stderr)
        print(f"I0000 00:00:17964{{count}}.123456    12{{count}}31 cudart_stub.cc:31] Could not find cuda drivers",
              file=sys.stderr)
        print(f"E0000 00:00:17964{{count}}.654321    12{{count}}31 cuda_platform.cc:52] failed call to cuInit",
              file=sys.stderr)
        if count == 0:
            sys.exit({EXIT_RECYCLE})
        print("error: written by the child", file=sys.stderr, flush=True)
        sys.exit({EXIT_CHILD_FATAL})
    """)
    specs = [ChildSpec("tuner0", "worker", worker, {}, "CPU only", forward_output=False)]

    outcome = fast_supervisor(run, specs).run()

    assert outcome.error == "tuner0 stopped the search: written by the child."
    captured = capfd.readouterr()
    assert captured.out.count("progress bar here\n") == 2
    assert captured.err.count(ABSL_NOTICE) == 1
    assert captured.err.count("cudart_stub.cc:31] Could not find cuda drivers") == 1
    assert captured.err.count("cuda_platform.cc:52] failed call to cuInit") == 1
    assert "error: written by the child\n" in captured.err
    assert "[tuner0]" not in captured.out + captured.err
    assert "progress bar here" not in run.log_path.read_text()
    assert read_status(run)["children"]["tuner0"]["starts"] == 2
    assert read_status(run)["oracle"] is None


@pytest.mark.parametrize(("line", "key"), [
    ("I0000 00:00:1796429523.291972   12531 cudart_stub.cc:31] Could not find cuda drivers on your machine.",
     "I cudart_stub.cc:31] Could not find cuda drivers on your machine."),
    ("E1204 23:43:05.855102    4650 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)",
     "E cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)"),
    (ABSL_NOTICE, ABSL_NOTICE),
    ("23:43:05 INFO    trial 0000 started on tuner0", None),
    ("error: the dataset folder is missing", None),
])
def test_native_log_key(line: str, key: str | None) -> None:
    assert native_log_key(line) == key


def test_supervisor_stops_on_fatal_child(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "run")
    fatal = script(f"""
        import sys
        print("error: the dataset folder is missing", flush=True)
        sys.exit({EXIT_CHILD_FATAL})
    """)
    specs = [ChildSpec("chief", "chief", SLEEPER, {}, "oracle"), ChildSpec("worker0", "worker", fatal, {}, "CPU"),
             ChildSpec("worker1", "worker", SLEEPER, {}, "CPU")]

    outcome = fast_supervisor(run, specs).run()

    assert outcome.error == "worker0 stopped the search: the dataset folder is missing."
    status = read_status(run)["children"]
    assert len(status["worker0"]["pids"]) == 1
    for name in ("chief", "worker1"):
        assert status[name]["status"] == "stopped"
        assert not is_alive(status[name]["pid"])


def test_supervisor_chief_crash_is_fatal(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "run")
    specs = [ChildSpec("chief", "chief", script("import os; os._exit(2)"), {}, "oracle"),
             ChildSpec("worker0", "worker", SLEEPER, {}, "CPU")]

    outcome = fast_supervisor(run, specs).run()

    assert outcome.error == "the chief exited unexpectedly (exit code 2)."


SUPERVISOR_DRIVER = """
import sys
from pathlib import Path
from tuner.distributed import ChildSpec, Supervisor
from tuner.run import RunFolder

run = RunFolder(Path(sys.argv[1]))
sleeper = [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(300)"]
# This child ignores SIGINT, so the supervisor has to kill it after its stop timeout.
stubborn = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
            "print('up', flush=True); time.sleep(300)"]
specs = [ChildSpec("chief", "chief", sleeper, {}, "oracle"), ChildSpec("worker0", "worker", sleeper, {}, "CPU"),
         ChildSpec("worker1", "worker", stubborn, {}, "CPU")]
try:
    Supervisor(run, specs, run.path / "workers.json", stop_timeout=2.0, summary_interval=3600.0).run()
except KeyboardInterrupt:
    sys.exit(130)
"""


def start_driver(run: RunFolder) -> tuple[subprocess.Popen[bytes], list[int]]:
    """Start a supervisor of three sleeping children in its own process; return it and the children's pids."""
    driver = subprocess.Popen([sys.executable, "-c", SUPERVISOR_DRIVER, str(run.path)], cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=default_sigint)
    status_path = run.path / "workers.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        # The children can print before the supervisor has written workers.json, so wait for both.
        if run.log_path.exists() and run.log_path.read_text().count("] up") == 3 and status_path.exists():
            return driver, [child["pid"] for child in read_status(run)["children"].values()]
        time.sleep(0.2)
    driver.kill()
    pytest.fail("the supervisor did not start its three children within 120 s")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigint_leaves_no_child(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "run")
    driver, pids = start_driver(run)

    driver.send_signal(signal.SIGINT)

    assert driver.wait(timeout=60) == 130
    assert [pid for pid in pids if is_alive(pid)] == []
    assert read_status(run)["children"]["worker1"]["last_exit"] == "killed by SIGKILL"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
def test_children_die_with_killed_supervisor(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "run")
    driver, pids = start_driver(run)

    driver.kill()
    driver.wait(timeout=10)

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(is_alive(pid) for pid in pids):
        time.sleep(0.1)
    assert [pid for pid in pids if is_alive(pid)] == []


# --- End to end: a chief and two CPU workers ----------------------------------------------------------


@pytest.fixture(scope="module")
def search_inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny space file and a 48-photo synthetic dataset, shared by the end-to-end tests."""
    root = tmp_path_factory.mktemp("distributed")
    space = root / "tiny.toml"
    space.write_text(TINY_SPACE, encoding="utf-8")
    return space, make_synthetic_faces(root / "faces", count=48, image_size=32, seed=3).root


def start_search(search_inputs: tuple[Path, Path], run_dir: Path, workers: int = 2) -> subprocess.Popen[bytes]:
    space, faces = search_inputs
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(run_dir.parent / f"{run_dir.name}.out", "wb") as output:
        return subprocess.Popen([sys.executable, "-m", "tuner", "search", "--space", str(space), "--data",
                                 str(faces), "--run", str(run_dir), "--workers", str(workers)], cwd=REPO,
                                stdout=output, stderr=subprocess.STDOUT, preexec_fn=default_sigint)


def wait_for_log(run_dir: Path, pattern: str, process: subprocess.Popen[bytes], timeout: float = 600) -> re.Match:
    """Wait until search.log has a line that matches `pattern`; return the match."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log_path = run_dir / "search.log"
        if log_path.exists():
            found = re.search(pattern, log_path.read_text(encoding="utf-8"))
            if found:
                return found
        if process.poll() is not None:
            pytest.fail(f"the search exited with {process.returncode} before logging {pattern!r}")
        time.sleep(0.5)
    process.kill()
    pytest.fail(f"no line matching {pattern!r} in {run_dir / 'search.log'} within {timeout:.0f} s")


def finish(process: subprocess.Popen[bytes], timeout: float = 900) -> int:
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
        pytest.fail(f"the search did not end within {timeout:.0f} s")


def check_every_trial_once(run_dir: Path) -> pd.DataFrame:
    """Assert that the search ran its 2 trials exactly once each, to completion; return trials.csv."""
    trials = pd.read_csv(run_dir / "trials.csv", dtype={"trial_id": str})
    assert sorted(trials["trial_id"]) == ["0", "1"]
    assert trials["trial_id"].is_unique
    assert list(trials["status"]) == ["COMPLETED", "COMPLETED"]
    assert sorted(read_trial_records(RunFolder(run_dir))) == ["0", "1"]
    assert sorted(path.name for path in (run_dir / "tuner").glob("trial_*")) == ["trial_0", "trial_1"]
    state = json.loads((run_dir / "state.json").read_text())
    assert state["status"] == "complete"
    assert (state["trials"], state["completed"], state["failed"]) == (2, 2, 0)
    assert (run_dir / "best_model.keras").is_file()
    return trials


@pytest.fixture(scope="module")
def clean_search(search_inputs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A search by a chief and two CPU workers, run to the end: its run folder and exit code."""
    run_dir = tmp_path_factory.mktemp("clean") / "run"
    process = start_search(search_inputs, run_dir)
    return run_dir, finish(process)


@pytest.mark.slow
def test_two_workers_run_each_trial_once(clean_search: tuple[Path, int]) -> None:
    run_dir, code = clean_search
    assert code == 0

    trials = check_every_trial_once(run_dir)

    assert sorted(trials["worker"]) == ["worker0", "worker1"]
    status = json.loads((run_dir / "workers.json").read_text())["children"]
    assert {name: child["status"] for name, child in status.items()} == {
        "chief": "finished", "worker0": "finished", "worker1": "finished"}
    assert all(len(child["pids"]) == 1 for child in status.values())


@pytest.mark.slow
def test_two_workers_run_folder(clean_search: tuple[Path, int]) -> None:
    run_dir, _ = clean_search
    run = RunFolder(run_dir)

    log_text = run.log_path.read_text()
    assert re.search(r"\[chief\] .* oracle listening on 127\.0\.0\.1:\d+", log_text)
    assert re.search(r"\[worker1\] .* trial \d started on worker1", log_text)
    assert "progress: trials 2 completed, 0 running, 0 failed" in log_text
    state = run.read_state()
    assert state["parallel"]["workers"] == {"worker0": "CPU, 1 thread", "worker1": "CPU, 1 thread"}
    assert state["parallel"]["global_batch_size"] == 8
    assert list(read_trials(run)["worker"].sort_values()) == ["worker0", "worker1"]


@pytest.mark.slow
def test_killed_worker_reruns_its_trial(search_inputs: tuple[Path, Path], tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    process = start_search(search_inputs, run_dir)
    started = wait_for_log(run_dir, r"trial (\d) started on worker1", process)
    killed_trial = started.group(1)
    victim = json.loads((run_dir / "workers.json").read_text())["children"]["worker1"]["pid"]

    os.kill(victim, signal.SIGKILL)

    assert finish(process) == 0
    trials = check_every_trial_once(run_dir)
    assert trials.set_index("trial_id").loc[killed_trial, "worker"] == "worker1"
    log_text = (run_dir / "search.log").read_text()
    assert "worker1 exited (killed by SIGKILL); restarting it with the same id" in log_text
    assert log_text.count(f"trial {killed_trial} started on worker1") == 2
    worker = json.loads((run_dir / "workers.json").read_text())["children"]["worker1"]
    assert len(worker["pids"]) == 2
    assert worker["pids"][0] == victim


@pytest.mark.slow
def test_ctrl_c_stops_every_process(search_inputs: tuple[Path, Path], tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    process = start_search(search_inputs, run_dir)
    wait_for_log(run_dir, r"trial \d started on worker\d", process)
    status = json.loads((run_dir / "workers.json").read_text())
    pids = [status["supervisor_pid"]] + [pid for child in status["children"].values() for pid in child["pids"]]

    process.send_signal(signal.SIGINT)

    assert process.wait(timeout=120) == 130
    assert [pid for pid in pids if is_alive(pid)] == []
    assert json.loads((run_dir / "state.json").read_text())["status"] == "interrupted"
    assert "Resume with:" in (tmp_path / "run.out").read_text()


@pytest.mark.slow
def test_chief_reloads_one_process_oracle(search_inputs: tuple[Path, Path], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # A one-process search saves its tuner as tuner0; a chief resuming it must still find the oracle.
    space, faces = search_inputs
    prepared = prepare_search(SearchOptions(space=space, data=faces, run_dir=tmp_path / "run", log_prefix=None))
    first = build_tuner(prepared, mixed_precision=False, jit_compile=False)
    begun = first.oracle.create_trial("tuner0")
    first.save()

    monkeypatch.setenv("KERASTUNER_TUNER_ID", "chief")
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "1")
    chief = build_tuner(prepared, mixed_precision=False, jit_compile=False)

    assert list(chief.oracle.trials) == [begun.trial_id]
    assert chief.oracle._retry_queue == [begun.trial_id]
