"""The search: Hyperband end to end, failed trials, resume after SIGKILL, run folder checks, the CLI."""

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras_tuner
import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.processes import default_sigint, is_alive
from tuner.cli import app
from tuner.errors import AgetuneError, DataError, RunFolderError
from tuner.hypermodel import AgeHyperModel
from tuner.options import check_before_tensorflow
from tuner.run import RunFolder, read_trial_records, read_trials
from tuner.search import (AgeTuner, RandomSearchOracle, SearchOptions, TrialsPerProcessReached, build_tuner,
                          describe_values, format_trial_line, prepare_search, run_search, search_elapsed,
                          search_trials)
from tuner.synthetic import make_synthetic_faces

REPO = Path(__file__).resolve().parents[1]
REAL_FACES = REPO.parent / "shared" / "faces"

HYPERBAND_SPACE = """
[search]
tuner = "hyperband"
max_epochs = 2
factor = 2
max_trials = 3
seed = 11
[data]
image_size = 32
batch_size = 8
[backbone]
weights = "none"
[training]
learning_rate = { type = "choice", values = [0.001, 0.0003, 0.0001] }
"""

RANDOM_SPACE = """
[search]
tuner = "random"
max_trials = {max_trials}
seed = 5
[data]
image_size = 32
batch_size = 8
[backbone]
weights = "none"
[training]
epochs = {epochs}
learning_rate = {{ type = "choice", values = [0.001, 0.0003, 0.0001, 0.00003] }}
"""


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_faces(tmp_path_factory.mktemp("faces") / "faces", count=40, image_size=32, seed=2).root


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.slow
def test_hyperband_search_end_to_end(tmp_path: Path, faces: Path) -> None:
    space = write(tmp_path / "hyperband.toml", HYPERBAND_SPACE)
    summary = run_search(SearchOptions(space=space, data=faces, run_dir=tmp_path / "run", verbose=0))
    run = RunFolder(tmp_path / "run")

    trials = pd.read_csv(run.trials_csv, dtype={"trial_id": str, "parent_trial": str})
    assert list(trials["trial_id"]) == ["0", "1", "2"]
    assert list(trials["status"]) == ["COMPLETED"] * 3
    assert list(trials["bracket"]) == [1, 1, 1]
    assert list(trials["round"]) == [0, 0, 1]
    assert list(trials["epochs"]) == [1, 1, 2]
    assert list(trials["initial_epoch"]) == [0, 0, 1]
    assert list(trials["epochs_trained"]) == [1, 1, 1]
    # The round-1 model continues the better of the two round-0 models.
    better = trials.iloc[:2].sort_values("val_mae").iloc[0]["trial_id"]
    assert trials.iloc[2]["parent_trial"] == better
    assert trials["val_mae"].notna().all()
    assert set(trials["worker"]) == {"tuner0"}
    assert "training.learning_rate" in trials.columns

    assert summary.trials == 3
    assert summary.completed == 3
    assert summary.best_val_mae == pytest.approx(trials["val_mae"].min())
    assert run.best_model_path.exists()
    state = run.read_state()
    assert state["status"] == "complete"
    assert state["completed"] == 3
    log_lines = run.log_path.read_text(encoding="utf-8").splitlines()
    assert sum(" completed in " in line for line in log_lines) == 3
    records = sorted(path.name for path in run.trials_dir.glob("*.json"))
    assert records == ["0.json", "1.json", "2.json"]
    config = run.read_config()
    assert config["space"]["search"]["max_trials"] == 3
    split = pd.read_csv(run.split_path)
    assert len(split) == 40


@pytest.mark.slow
def test_failed_trial_is_recorded_and_search_goes_on(tmp_path: Path, faces: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    original_fit = AgeHyperModel.fit

    def fit_that_runs_out_of_memory(self, hp, model, *args, **kwargs):
        if hp.values["training.learning_rate"] == 0.001:
            raise RuntimeError("simulated out of memory")
        return original_fit(self, hp, model, *args, **kwargs)

    monkeypatch.setattr(AgeHyperModel, "fit", fit_that_runs_out_of_memory)
    space = write(tmp_path / "random.toml", RANDOM_SPACE.format(max_trials=2, epochs=1)
                  .replace("0.001, 0.0003, 0.0001, 0.00003", "0.001, 0.0003"))
    summary = run_search(SearchOptions(space=space, data=faces, run_dir=tmp_path / "run", verbose=0))
    trials = read_trials(RunFolder(tmp_path / "run")).set_index("training.learning_rate")
    assert trials.loc[0.001, "status"] == "FAILED"
    assert trials.loc[0.001, "message"] == "RuntimeError: simulated out of memory"
    assert pd.isna(trials.loc[0.001, "val_mae"])
    assert trials.loc[0.0003, "status"] == "COMPLETED"
    assert (summary.completed, summary.failed) == (1, 1)
    assert summary.best_val_mae == pytest.approx(trials.loc[0.0003, "val_mae"])


def test_consecutive_failures_stop_the_search(tmp_path: Path, faces: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fit_that_fails(self, hp, model, *args, **kwargs):
        raise RuntimeError(f"simulated failure at learning rate {hp.values['training.learning_rate']}")

    monkeypatch.setattr(AgeHyperModel, "fit", fit_that_fails)
    space = write(tmp_path / "random.toml", RANDOM_SPACE.format(max_trials=10, epochs=1))
    with pytest.raises(AgetuneError) as raised:
        run_search(SearchOptions(space=space, data=faces, run_dir=tmp_path / "run", verbose=0))
    message = str(raised.value)
    assert message.startswith("the search stopped after 3 failed trials in a row; the last error was: ")
    assert "simulated failure at learning rate" in message
    run = RunFolder(tmp_path / "run")
    assert run.read_state()["status"] == "failed"
    assert list(read_trials(run)["status"]) == ["FAILED"] * 3


def test_run_folder_of_another_search_is_rejected(tmp_path: Path, faces: Path) -> None:
    first = write(tmp_path / "a.toml", RANDOM_SPACE.format(max_trials=2, epochs=1))
    prepare_search(SearchOptions(space=first, data=faces, run_dir=tmp_path / "run"))
    # Once the tuner has state, the folder belongs to that search.
    (tmp_path / "run" / "tuner").mkdir()
    second = write(tmp_path / "b.toml", RANDOM_SPACE.format(max_trials=2, epochs=3))
    with pytest.raises(RunFolderError) as raised:
        prepare_search(SearchOptions(space=second, data=faces, run_dir=tmp_path / "run"))
    assert str(raised.value) == (
        f"{tmp_path / 'run'} holds a search with another configuration (space.training.epochs was 1, now 3). "
        "Pass another --run folder, or --overwrite to delete it and start afresh.")


def test_search_that_never_started_is_replaced(tmp_path: Path, faces: Path) -> None:
    space = write(tmp_path / "a.toml", RANDOM_SPACE.format(max_trials=2, epochs=1))
    run = RunFolder(tmp_path / "run")
    with pytest.raises(AgetuneError, match="Pass --age-column real_age"):
        prepare_search(SearchOptions(space=space, data=faces, run_dir=run.path, layout={"age_column": "age"}))
    assert run.config_path.exists()
    prepared = prepare_search(SearchOptions(space=space, data=faces, run_dir=run.path))
    assert run.read_config()["data"]["age_column"] == "real_age"
    assert len(prepared.split) == 40


def test_overwrite_deletes_the_earlier_search(tmp_path: Path, faces: Path, caplog: pytest.LogCaptureFixture) -> None:
    space = write(tmp_path / "a.toml", RANDOM_SPACE.format(max_trials=2, epochs=1))
    run = RunFolder(tmp_path / "run")
    prepare_search(SearchOptions(space=space, data=faces, run_dir=run.path))
    (run.trials_dir).mkdir()
    (run.trials_dir / "0.json").write_text("{}", encoding="utf-8")
    other = write(tmp_path / "b.toml", RANDOM_SPACE.format(max_trials=2, epochs=3))
    caplog.set_level("WARNING", logger="tuner")
    prepare_search(SearchOptions(space=other, data=faces, run_dir=run.path, overwrite=True))
    assert f"--overwrite: deleting {run.path} (tuner state, 1 trial records" in caplog.text
    assert not run.trials_dir.exists()
    assert run.read_config()["space"]["training"]["epochs"] == 3


def test_overwrite_never_deletes_a_foreign_folder(tmp_path: Path, faces: Path) -> None:
    folder = tmp_path / "precious"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me", encoding="utf-8")
    space = write(tmp_path / "a.toml", RANDOM_SPACE.format(max_trials=2, epochs=1))
    with pytest.raises(RunFolderError, match="is not an agetune run folder; refusing to delete it"):
        prepare_search(SearchOptions(space=space, data=faces, run_dir=folder, overwrite=True))
    assert (folder / "notes.txt").read_text(encoding="utf-8") == "keep me"


def test_foreign_config_json_is_never_replaced(tmp_path: Path, faces: Path) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "config.json").write_text('{"owner": "someone else"}', encoding="utf-8")
    space = write(tmp_path / "a.toml", RANDOM_SPACE.format(max_trials=2, epochs=1))

    with pytest.raises(RunFolderError) as raised:
        prepare_search(SearchOptions(space=space, data=faces, run_dir=folder))

    assert str(raised.value) == (f"{folder} exists and is not an agetune run folder (it has no config.json that "
                                 "agetune wrote). Pick another --run folder.")
    assert [path.name for path in folder.iterdir()] == ["config.json"]
    assert (folder / "config.json").read_text(encoding="utf-8") == '{"owner": "someone else"}'


def test_run_path_that_is_a_file(tmp_path: Path, faces: Path) -> None:
    path = write(tmp_path / "afile", "not a folder")
    space = write(tmp_path / "a.toml", RANDOM_SPACE.format(max_trials=2, epochs=1))

    with pytest.raises(RunFolderError) as raised:
        prepare_search(SearchOptions(space=space, data=faces, run_dir=path))

    assert str(raised.value) == f"--run {path} is a file, not a folder. Pass a folder for the run's files."


def test_resume_after_the_dataset_moved(tmp_path: Path, faces: Path) -> None:
    data = Path(shutil.copytree(faces, tmp_path / "faces"))
    space = write(tmp_path / "a.toml", RANDOM_SPACE.format(max_trials=2, epochs=1))
    options = SearchOptions(space=space, data=data, run_dir=tmp_path / "run")
    prepare_search(options)
    data.rename(tmp_path / "moved")

    # A resumed search trains on the photos its split names, so both checks look there.
    for check in (check_before_tensorflow, prepare_search):
        with pytest.raises(DataError) as raised:
            check(options)
        message = str(raised.value)
        assert message.startswith(f"40 of 40 photos in {tmp_path / 'run' / 'split.csv'} are missing, such as "
                                  f"{data / 'final_files'}/")
        assert message.endswith("put the dataset back where it was, or pass --overwrite to start a new search.")

    (tmp_path / "moved").rename(data)
    check_before_tensorflow(options)
    assert len(prepare_search(options).split) == 40


def test_interrupted_search_records_its_state(tmp_path: Path, faces: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(AgeTuner, "search", interrupted)
    space = write(tmp_path / "a.toml", RANDOM_SPACE.format(max_trials=2, epochs=1))
    with pytest.raises(KeyboardInterrupt):
        run_search(SearchOptions(space=space, data=faces, run_dir=tmp_path / "run", verbose=0))
    run = RunFolder(tmp_path / "run")
    assert run.read_state()["status"] == "interrupted"
    assert "search interrupted; the trial in progress will run again" in run.log_path.read_text(encoding="utf-8")


def test_cli_interrupt_says_how_to_resume(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(options, max_trials_per_process):
        raise KeyboardInterrupt

    monkeypatch.setattr("tuner.trial_process.run_search_in_processes", interrupted)
    monkeypatch.setattr(sys, "argv", ["agetune", "search", "--space", "quick", "--overwrite"])
    result = CliRunner().invoke(app, ["search", "--space", "quick"])
    assert result.exit_code == 130
    assert "Search interrupted; the trial in progress will run again. Resume with:\n  agetune search --space quick" \
        in result.output


def test_cli_fatal_errors_exit_1(tmp_path: Path, faces: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["search", "--space", "qiuck", "--run", str(tmp_path / "r1")])
    assert result.exit_code == 1
    assert "error: search space 'qiuck' not found. Did you mean 'quick'?" in result.output

    result = runner.invoke(app, ["search", "--data", str(tmp_path / "nowhere"), "--run", str(tmp_path / "r2")])
    assert result.exit_code == 1
    assert "error: " in result.output
    assert str(tmp_path / "nowhere") in result.output

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("AGETUNE_OFFLINE", "1")
    started = time.monotonic()
    result = runner.invoke(app, ["search", "--data", str(faces), "--weights", "imagenet",
                                 "--run", str(tmp_path / "r3")])
    assert result.exit_code == 1
    assert "ImageNet weights for ResNet50 are not in" in result.output
    assert time.monotonic() - started < 30
    assert not (tmp_path / "r3" / "tuner").exists()


def test_trial_line_and_differences() -> None:
    baseline = {"training.learning_rate": 1e-4, "head.dense_layers": 0, "augmentation.width_shift": 0.2}
    values = {"training.learning_rate": 3.16e-4, "head.dense_layers": 0, "augmentation.width_shift": 0.1,
              "tuner/epochs": 4}
    assert describe_values(values, baseline) == "width_shift=0.1, learning_rate=0.000316"
    assert describe_values({"head.dense_layers": 0}, baseline) == "baseline values"
    trials = pd.DataFrame([
        {"trial_id": "0000", "status": "COMPLETED", "val_mae": 9.5, "best_epoch": 2, "bracket": 1, "round": 0,
         "message": None, "epochs_trained": 2, "initial_epoch": 0},
        {"trial_id": "0001", "status": "COMPLETED", "val_mae": 8.25, "best_epoch": 1, "bracket": 1, "round": 1,
         "message": None, "epochs_trained": 2, "initial_epoch": 2},
        {"trial_id": "0002", "status": "FAILED", "val_mae": None, "best_epoch": None, "bracket": 0, "round": 0,
         "message": "ResourceExhaustedError: OOM when allocating tensor", "epochs_trained": 0, "initial_epoch": 0},
    ])
    assert format_trial_line("0001", trials, 75, 3725) == (
        "trial 0001 completed in 1m15s | val_mae 8.25 at epoch 1 | bracket 1 round 1 | best 8.25 (trial 0001) | "
        "2 done, 1 failed, 1h02m elapsed")
    assert format_trial_line("0002", trials, 4, 3729) == (
        "trial 0002 failed in 4s | error: ResourceExhaustedError: OOM when allocating tensor | bracket 0 round 0 | "
        "best 8.25 (trial 0001) | 2 done, 1 failed, 1h02m elapsed")


def test_oracle_reload_after_trial_end(tmp_path: Path) -> None:
    def make_oracle() -> RandomSearchOracle:
        oracle = RandomSearchOracle(objective=keras_tuner.Objective("val_mae", "min"), max_trials=3, seed=1)
        oracle._set_project_dir(str(tmp_path), "tuner")
        oracle.hyperparameters.Choice("learning_rate", [0.1, 0.01, 0.001])
        return oracle

    oracle = make_oracle()
    trial = oracle.create_trial("tuner0")
    oracle.update_trial(trial.trial_id, {"val_mae": 5.0})
    trial.status = keras_tuner.engine.trial.TrialStatus.COMPLETED
    oracle.end_trial(trial)

    state = json.loads((tmp_path / "tuner" / "oracle.json").read_text(encoding="utf-8"))
    assert state["ongoing_trials"] == {}
    # A process that stops here and a fresh one that reloads the oracle: the next trial is a new one.
    fresh = make_oracle()
    fresh.reload()
    following = fresh.create_trial("tuner0")
    assert following.trial_id != trial.trial_id
    assert fresh.end_order == [trial.trial_id]


def test_search_elapsed_adds_sessions(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    assert search_elapsed(run) == 0.0

    ten_seconds_ago = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=10)
    run.update_state(status="running", started_at=ten_seconds_ago.isoformat(timespec="seconds"), wall_seconds=100.0)
    elapsed = search_elapsed(run)
    assert 109.0 <= elapsed < 115.0

    run.update_state(status="interrupted")
    assert search_elapsed(run) == 100.0


@pytest.mark.slow
def test_trials_per_process_limit(tmp_path: Path, faces: Path) -> None:
    space = write(tmp_path / "random.toml", RANDOM_SPACE.format(max_trials=2, epochs=1))
    prepared = prepare_search(SearchOptions(space=space, data=faces, run_dir=tmp_path / "run", verbose=0))
    tuner = build_tuner(prepared, mixed_precision=False, jit_compile=False)
    tuner.limit_trials_per_process(1)
    # Trial 0 trains; the oracle then hands out trial 1, and the process stops before training it.
    with pytest.raises(TrialsPerProcessReached):
        search_trials(prepared, tuner, verbose=0)
    assert sorted(read_trial_records(prepared.run)) == ["0"]

    # A fresh tuner reloads the oracle, trains trial 1, and ends normally because the oracle has no trial left.
    tuner = build_tuner(prepared, mixed_precision=False, jit_compile=False)
    tuner.limit_trials_per_process(1)
    search_trials(prepared, tuner, verbose=0)
    records = read_trial_records(prepared.run)
    assert sorted(records) == ["0", "1"]
    assert [records[trial_id]["status"] for trial_id in ("0", "1")] == ["COMPLETED", "COMPLETED"]
    assert all(records[trial_id]["rss_mib"] > 100 for trial_id in ("0", "1"))
    assert all(records[trial_id]["peak_rss_mib"] >= records[trial_id]["rss_mib"] for trial_id in ("0", "1"))
    log_text = prepared.run.log_path.read_text(encoding="utf-8")
    assert log_text.count("trial 1 started") == 1


def _search_command(space: Path, faces: Path, run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "tuner", "search", "--space", str(space), "--data", str(faces),
            "--run", str(run_dir)]


@pytest.mark.slow
def test_search_killed_mid_trial_resumes(tmp_path: Path, faces: Path) -> None:
    space = write(tmp_path / "random.toml", RANDOM_SPACE.format(max_trials=3, epochs=2))
    run = RunFolder(tmp_path / "run")
    command = _search_command(space, faces, run.path)
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, cwd=REPO, env=environment, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        # Kill once trial 0 has finished and trial 1 is training.
        while time.monotonic() < deadline:
            if (run.trials_dir / "0.json").exists() and "trial 1 started" in _read(run.log_path):
                break
            if process.poll() is not None:
                pytest.fail(f"the search ended before it could be killed, exit code {process.returncode}")
            time.sleep(0.5)
        else:
            pytest.fail("trial 1 never started")
        time.sleep(3)
        trial_process = json.loads((run.path / "workers.json").read_text(encoding="utf-8"))["children"]["tuner0"]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    # The trial process dies with the search's main process.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and is_alive(trial_process["pid"]):
        time.sleep(0.1)
    assert not is_alive(trial_process["pid"])
    first_record = json.loads((run.trials_dir / "0.json").read_text(encoding="utf-8"))
    assert not (run.trials_dir / "1.json").exists()
    # What a kill in the middle of a write leaves behind: a torn trials.csv
    # and a temporary file that never got renamed.
    run.trials_csv.write_text("trial_id,status\n0,COMPL", encoding="utf-8")
    (run.tuner_dir / ".oracle.json.1234.tmp").write_text('{"ongoing_tr', encoding="utf-8")

    finished = subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=900)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "resuming the search in" in finished.stderr

    trials = pd.read_csv(run.trials_csv, dtype={"trial_id": str})
    assert list(trials["trial_id"]) == ["0", "1", "2"]
    assert list(trials["status"]) == ["COMPLETED"] * 3
    assert trials["training.learning_rate"].nunique() == 3
    assert list(trials["epochs_trained"]) == [2, 2, 2]
    # Trial 0 finished before the kill and was not run again.
    assert json.loads((run.trials_dir / "0.json").read_text(encoding="utf-8")) == first_record
    log_text = _read(run.log_path)
    assert log_text.count("trial 0 completed") == 1
    assert log_text.count("trial 1 started") == 2
    assert log_text.count("trial 1 completed") == 1
    assert run.read_state()["status"] == "complete"
    # Each trial trained in a fresh process: --max-trials-per-process is 1 by default. The resumed
    # search started one process for trial 1 and one for trial 2, and none after the last trial.
    records = read_trial_records(run)
    assert len({records[trial_id]["pid"] for trial_id in ("0", "1", "2")}) == 3
    trial_process = json.loads((run.path / "workers.json").read_text(encoding="utf-8"))["children"]["tuner0"]
    assert trial_process["pids"] == [records["1"]["pid"], records["2"]["pid"]]
    assert all(records[trial_id]["rss_mib"] > 100 for trial_id in ("0", "1", "2"))


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_stops_trial_process(tmp_path: Path, faces: Path) -> None:
    space = write(tmp_path / "random.toml", RANDOM_SPACE.format(max_trials=2, epochs=1))
    run = RunFolder(tmp_path / "run")
    # Ctrl-C at a terminal reaches the main process only: the trial process leads its own session.
    process = subprocess.Popen(_search_command(space, faces, run.path), cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True,
                               preexec_fn=default_sigint)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and "trial 0 started" not in _read(run.log_path):
            time.sleep(0.5)
        trial_process = json.loads((run.path / "workers.json").read_text(encoding="utf-8"))["children"]["tuner0"]
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()

    assert process.returncode == 130
    assert not is_alive(trial_process["pid"])
    assert "Search interrupted; the trial in progress will run again. Resume with:" in output
    assert run.read_state()["status"] == "interrupted"
    assert not (run.trials_dir / "0.json").exists()


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.exists() else ""


@pytest.mark.slow
@pytest.mark.real_data
def test_search_on_real_photos(tmp_path: Path) -> None:
    if not (REAL_FACES / "labels.csv").exists():
        pytest.skip(f"real face photos not found at {REAL_FACES}; they are not part of the repository")
    result = CliRunner().invoke(app, ["search", "--space", "quick", "--data", str(REAL_FACES), "--limit", "200",
                                      "--max-trials", "2", "--run", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    run = RunFolder(tmp_path / "run")
    split = pd.read_csv(run.split_path)
    assert len(split) == 200
    assert split["file_name"].is_unique
    trials = read_trials(run)
    assert list(trials["status"]) == ["COMPLETED", "COMPLETED"]
    assert trials["val_mae"].between(0, 116).all()
    assert "search complete: 2 of 2 trials completed, 0 failed; best trial" in result.output
