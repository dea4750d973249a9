"""The run folder: everything a search leaves behind, and the only input of reports and exports.

    runs/<name>/
      config.json      the resolved search space and options the search started with
      split.csv        the photos with their ages and their subset (train or validation)
      tuner/           Keras Tuner's state: oracle.json, trial_*/trial.json, checkpoints
      trials/<id>.json one record per trial: per-epoch history, timing, the worker
      trials.csv       one row per trial, rewritten atomically after every trial
      state.json       running, complete, interrupted or failed; start and end times
      search.log       the log of every process that worked on the search
      best_model.keras the best trial's model, written when the search completes
      workers.json     a parallel search's processes: pids, restarts, last exit
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from tuner.errors import RunFolderError

TUNER_PROJECT = "tuner"
# Hyperband writes its bookkeeping into each trial's hyperparameters under these names.
HYPERBAND_KEYS = {
    "tuner/bracket": "bracket",
    "tuner/round": "round",
    "tuner/epochs": "epochs",
    "tuner/initial_epoch": "initial_epoch",
    "tuner/trial_id": "parent_trial",
}
TRIAL_COLUMNS = ["trial_id", "status", "worker", "bracket", "round", "parent_trial", "initial_epoch", "epochs",
                 "epochs_trained", "best_epoch", "val_mae", "val_mape", "mae", "train_seconds", "started_at",
                 "finished_at", "message"]


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` so that a reader, or a crash, never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    """Write `data` as JSON atomically; NaN becomes null so that any JSON reader accepts the file."""
    atomic_write_text(path, json.dumps(_finite(data), indent=2, sort_keys=True, default=str) + "\n")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


@dataclass(frozen=True)
class RunFolder:
    """Paths of one run folder."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def split_path(self) -> Path:
        return self.path / "split.csv"

    @property
    def tuner_dir(self) -> Path:
        return self.path / TUNER_PROJECT

    @property
    def trials_dir(self) -> Path:
        return self.path / "trials"

    @property
    def trials_csv(self) -> Path:
        return self.path / "trials.csv"

    @property
    def state_path(self) -> Path:
        return self.path / "state.json"

    @property
    def log_path(self) -> Path:
        return self.path / "search.log"

    @property
    def best_model_path(self) -> Path:
        return self.path / "best_model.keras"

    @property
    def predictions_path(self) -> Path:
        return self.path / "predictions.csv"

    def checkpoint_path(self, trial_id: str) -> Path:
        return self.tuner_dir / f"trial_{trial_id}" / "checkpoint.weights.h5"

    def read_config(self) -> dict[str, Any]:
        """Return config.json; raise RunFolderError if it is missing or damaged."""
        return _read_json(self.config_path, "config.json")

    def read_state(self) -> dict[str, Any]:
        """Return state.json, or an empty state for a search that never wrote one."""
        if not self.state_path.exists():
            return {}
        return _read_json(self.state_path, "state.json")

    def update_state(self, **changes: Any) -> dict[str, Any]:
        """Merge `changes` into state.json atomically and return the new state."""
        state = self.read_state()
        state.update(changes)
        atomic_write_json(self.state_path, state)
        return state


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunFolderError(f"{path.parent} is not an agetune run folder: {what} is missing. "
                             "Pass the folder that `agetune search --run` wrote.") from None
    except json.JSONDecodeError as error:
        raise RunFolderError(f"{path} is damaged ({error}). Rerun the search into a new --run folder.") from None


#: Keys of every config.json that agetune writes; a config.json without them belongs to something else.
CONFIG_KEYS = frozenset({"space_name", "space", "data"})


def run_folder_action(run: RunFolder, config: dict[str, Any] | None, overwrite: bool) -> tuple[str, str | None]:
    """Decide what a search does with its run folder, and change nothing.

    Returns the action and, for "restart", how the configuration changed:
    "new" (no folder, or an empty one), "overwrite" (delete an earlier
    search), "resume" (the same search again), or "restart" (a search whose
    configuration changed before its first trial). Raises `RunFolderError`
    for a path that is a file, a folder that agetune did not write, or one
    that contains a search with another configuration. A `config` of None skips
    that last comparison.
    """
    if run.path.exists() and not run.path.is_dir():
        raise RunFolderError(f"--run {run.path} is a file, not a folder. Pass a folder for the run's files.")
    if not run.path.exists() or not any(run.path.iterdir()):
        return "new", None
    previous = _agetune_config(run)
    if overwrite:
        if previous is None and not run.tuner_dir.exists():
            raise RunFolderError(f"{run.path} exists and is not an agetune run folder; refusing to delete it. "
                                 "Pick another --run folder.")
        return "overwrite", None
    if previous is None:
        raise RunFolderError(f"{run.path} exists and is not an agetune run folder (it has no config.json that "
                             "agetune wrote). Pick another --run folder.")
    difference = None if config is None else describe_difference(previous, config)
    if difference is None:
        return "resume", None
    if not run.tuner_dir.exists():
        return "restart", difference
    raise RunFolderError(f"{run.path} holds a search with another configuration ({difference}). "
                         "Pass another --run folder, or --overwrite to delete it and start afresh.")


def _agetune_config(run: RunFolder) -> dict[str, Any] | None:
    """Return the folder's config.json if agetune wrote it, else None."""
    try:
        config = json.loads(run.config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return config if isinstance(config, dict) and CONFIG_KEYS <= set(config) else None


def describe_difference(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> str | None:
    """Return the first setting that differs between two configurations, as "key was X, now Y", or None."""
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if isinstance(before, dict) and isinstance(after, dict):
            found = describe_difference(before, after, f"{prefix}{key}.")
            if found:
                return found
        elif before != after:
            return f"{prefix}{key} was {before!r}, now {after!r}"
    return None


def open_run(path: str | Path) -> RunFolder:
    """Return the run folder at `path`; raise RunFolderError if it is not one."""
    run = RunFolder(Path(path))
    if not run.path.is_dir():
        raise RunFolderError(f"run folder {run.path} not found. Pass the folder that `agetune search --run` wrote.")
    run.read_config()
    return run


def read_trial_records(run: RunFolder) -> dict[str, dict[str, Any]]:
    """Return the per-trial records under trials/, by trial id; a damaged one is skipped."""
    records: dict[str, dict[str, Any]] = {}
    for path in sorted(run.trials_dir.glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            # Written atomically, so a damaged record comes from outside agetune; the trial.json still counts.
            continue
        records[record["trial_id"]] = record
    return records


def _read_tuner_trials(run: RunFolder) -> list[dict[str, Any]]:
    trials = []
    for path in sorted(run.tuner_dir.glob("trial_*/trial.json")):
        try:
            trials.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError):
            continue
    return trials


def collect_trials(run: RunFolder) -> pd.DataFrame:
    """Return one row per trial: status, Hyperband bracket and round, metrics, timing and hyperparameters.

    Hyperparameter columns are named as in the space file (`training.learning_rate`).
    """
    records = read_trial_records(run)
    rows = []
    for state in _read_tuner_trials(run):
        trial_id = state["trial_id"]
        values = dict(state.get("hyperparameters", {}).get("values", {}))
        record = records.get(trial_id, {})
        status = state.get("status")
        if status == "RUNNING" and record.get("status"):
            # The record is written after the oracle ends the trial, so it is
            # the later word, also when the oracle stopped before saving.
            status = record["status"]
        row: dict[str, Any] = {"trial_id": trial_id, "status": status}
        for key, column in HYPERBAND_KEYS.items():
            row[column] = values.pop(key, None)
        history = record.get("history", [])
        best = _best_epoch(history)
        row.update({
            "worker": record.get("worker"),
            "epochs_trained": len(history),
            "best_epoch": best.get("epoch"),
            "val_mae": best.get("val_mae"),
            "val_mape": best.get("val_mape"),
            "mae": best.get("mae"),
            "train_seconds": record.get("train_seconds"),
            "started_at": record.get("started_at"),
            "finished_at": record.get("finished_at"),
            "message": _last_line(state.get("message") or record.get("error")),
        })
        if row["epochs"] is None:
            row["epochs"] = record.get("epochs")
        if row["initial_epoch"] is None:
            row["initial_epoch"] = 0
        row.update(values)
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=TRIAL_COLUMNS)
    hp_columns = sorted(column for column in frame.columns if column not in TRIAL_COLUMNS)
    frame = frame.reindex(columns=TRIAL_COLUMNS + hp_columns)
    return frame.sort_values("trial_id").reset_index(drop=True)


def _best_epoch(history: list[dict[str, Any]]) -> dict[str, Any]:
    scored = [entry for entry in history if isinstance(entry.get("val_mae"), int | float)
              and math.isfinite(entry["val_mae"])]
    return min(scored, key=lambda entry: entry["val_mae"]) if scored else {}


def _last_line(message: str | None) -> str | None:
    """Return the last non-empty line of a traceback, which names the error."""
    if not message:
        return None
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else None


def write_trials_csv(run: RunFolder) -> pd.DataFrame:
    """Rebuild trials.csv from the tuner state and the trial records; return the table."""
    frame = collect_trials(run)
    atomic_write_text(run.trials_csv, frame.to_csv(index=False))
    return frame


def select_best_trial(trials: pd.DataFrame) -> pd.Series | None:
    """Return the completed trial with the lowest val MAE; ties go to fewer epochs, then the earlier trial."""
    done = trials[(trials["status"] == "COMPLETED") & trials["val_mae"].notna()]
    if done.empty:
        return None
    ordered = done.assign(_epochs=done["epochs_trained"].fillna(0) + done["initial_epoch"].fillna(0))
    ordered = ordered.sort_values(["val_mae", "_epochs", "trial_id"], kind="stable")
    return ordered.drop(columns="_epochs").iloc[0]


def read_trials(run: RunFolder) -> pd.DataFrame:
    """Return the trials table of a run folder, rebuilt from the tuner state so it is current mid-search.

    Trial ids stay strings ("0007"), as Keras Tuner names them.
    """
    frame = collect_trials(run)
    frame["trial_id"] = frame["trial_id"].astype(str)
    return frame


def format_duration(seconds: float) -> str:
    """Format a duration for log lines: 45s, 3m07s, 1h02m."""
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"
