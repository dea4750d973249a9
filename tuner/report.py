"""`agetune report`: what a search found, written as HTML and Markdown for people who run the stores.

The report reads only the run folder (and the folder given with
`--baseline`). `build_report_data` gathers every number: the data split, the
search budget and outcome, the best trial and why it won, the baseline, the
errors of the best model on the validation photos and the age check at the
till. `write_report` turns those numbers into `report.html` (one
self-contained file, figures embedded as PNG), `report.md` with its PNGs and
`trials.csv`, in English or Russian.

The best model's predictions on the validation photos are computed once and
cached in the run folder as `predictions.csv`. A later report reuses them
while the best trial stays the same.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup, escape

from tuner import plots
from tuner.data import AGE_BANDS, load_split, make_dataset
from tuner.errors import AgetuneError, DataError, RunFolderError
from tuner.report_text import texts
from tuner.run import (TRIAL_COLUMNS, RunFolder, atomic_write_text, open_run, read_trial_records, read_trials,
                       select_best_trial)
from tuner.space import load_space

log = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
#: Thresholds of the age-check curves, in years of estimated age.
CHECK_THRESHOLDS = range(18, 31)
#: Photos shown by --gallery: the validation photos with the largest absolute errors.
GALLERY_SIZE = 12
GALLERY_PIXELS = 160
PREDICTION_COLUMNS = ["file_name", "age", "predicted", "trial_id"]
FIGURE_FILES = ("ages.png", "learning_curves.png", "hyperparameters.png", "predictions.png", "age_bands.png",
                "age_check.png")
# Head settings that do nothing without a dense layer, ignored when comparing such a trial with the baseline.
HEAD_KEYS = ("head.units", "head.dropout", "head.activation")
# Settings (by prefix) that do not shape the model, left out when a run's settings are compared with the baseline's.
UNCOMPARED_SETTINGS = ("search.", "data.cache")
# Photo names in error messages of failed trials, hidden so that a report names no photo.
PHOTO_NAME = re.compile(r"[^\s'\"]+\.(?:jpe?g|png|bmp|gif|webp)\b", re.IGNORECASE)


# --------------------------------------------------------------------------
# Pure computations, testable on hand-made numbers


def age_check(true: Sequence[float] | np.ndarray, predicted: Sequence[float] | np.ndarray, legal_age: int,
              threshold: int) -> dict[str, Any]:
    """Count how the till treats each person when it requests an ID below `threshold` estimated years.

    Minors (true age < `legal_age`) estimated at `threshold` or older pass
    without an ID check; adults (true age >= `legal_age`) estimated under
    `threshold` are asked for an ID. Shares are None when the group is empty.
    """
    true = np.asarray(true, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    minors = true < legal_age
    passed = minors & (predicted >= threshold)
    adults = ~minors
    checked = adults & (predicted < threshold)
    minor_count, adult_count = int(minors.sum()), int(adults.sum())
    return {
        "legal_age": legal_age,
        "threshold": threshold,
        "minors": minor_count,
        "minors_passed": int(passed.sum()),
        "minors_passed_share": int(passed.sum()) / minor_count if minor_count else None,
        "adults": adult_count,
        "adults_checked": int(checked.sum()),
        "adults_checked_share": int(checked.sum()) / adult_count if adult_count else None,
    }


def age_check_curve(true: np.ndarray, predicted: np.ndarray, legal_age: int,
                    thresholds: Sequence[int]) -> pd.DataFrame:
    """Return `age_check` for each threshold, one row each."""
    return pd.DataFrame([age_check(true, predicted, legal_age, threshold) for threshold in thresholds])


def wilson_interval(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """Return the Wilson score interval of a share (95% for z = 1.96), which stays inside [0, 1] for few cases."""
    if total <= 0:
        raise ValueError(f"total must be positive, got {total}")
    share = successes / total
    denominator = 1.0 + z * z / total
    centre = (share + z * z / (2.0 * total)) / denominator
    half = z * math.sqrt(share * (1.0 - share) / total + z * z / (4.0 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def band_errors(true: Sequence[float] | np.ndarray, predicted: Sequence[float] | np.ndarray) -> pd.DataFrame:
    """Return photos, MAE and bias (mean predicted - true) per age band of `tuner.data.AGE_BANDS`.

    A band without photos gets NaN for MAE and bias.
    """
    true = np.asarray(true, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    rows = []
    for label, low, high in AGE_BANDS:
        inside = (true >= low) & (true < high)
        errors = predicted[inside] - true[inside]
        rows.append({
            "band": label,
            "photos": int(inside.sum()),
            "mae": float(np.mean(np.abs(errors))) if len(errors) else math.nan,
            "bias": float(np.mean(errors)) if len(errors) else math.nan,
        })
    return pd.DataFrame(rows)


def chain_history(trial_id: str, trials: pd.DataFrame, records: dict[str, dict[str, Any]]
                  ) -> tuple[list[dict[str, Any]], int | None]:
    """Return a trial's per-epoch history, preceded by the epochs of the Hyperband trials it continued.

    The second value is the last epoch taken from earlier rounds (None for a
    trial that started from scratch, or whose parent left no record).
    """
    by_id = trials.set_index("trial_id")
    chain = _chain_ids(trial_id, trials)
    combined: list[dict[str, Any]] = []
    continued_at = None
    for tid in reversed(chain):
        if combined and tid in by_id.index:
            # A continuing trial starts after the parent's last epoch; drop any parent epochs past that point.
            start = int(_number(by_id.loc[tid, "initial_epoch"]))
            combined = [entry for entry in combined if entry.get("epoch", 0) <= start]
            if tid == trial_id and combined:
                continued_at = start
        combined += list(records.get(tid, {}).get("history", []))
    return combined, continued_at


def _chain_ids(trial_id: str, trials: pd.DataFrame) -> list[str]:
    """Return the trial and the Hyperband trials it continued, newest first."""
    by_id = trials.set_index("trial_id")
    chain = [trial_id]
    while chain[-1] in by_id.index:
        parent = by_id.loc[chain[-1], "parent_trial"]
        if parent is None or pd.isna(parent) or str(parent) in chain:
            break
        chain.append(str(parent))
    return chain


def trial_totals(trial_id: str, trials: pd.DataFrame) -> dict[str, float]:
    """Return the epochs and training seconds a trial's model took, counting the Hyperband rounds it continued."""
    by_id = trials.set_index("trial_id")
    row = by_id.loc[trial_id]
    epochs = float(_number(row["initial_epoch"]) + _number(row["epochs_trained"]))
    seconds = sum(_number(by_id.loc[tid, "train_seconds"]) for tid in _chain_ids(trial_id, trials)
                  if tid in by_id.index)
    return {"epochs": epochs, "train_seconds": float(seconds)}


def _number(value: Any) -> float:
    return 0.0 if value is None or pd.isna(value) else float(value)


def hyperparameter_columns(trials: pd.DataFrame) -> list[str]:
    """Return the hyperparameter columns of a trials table (named like `training.learning_rate`)."""
    return [column for column in trials.columns if column not in TRIAL_COLUMNS]


def same_value(left: Any, right: Any) -> bool:
    """Compare two hyperparameter values; numbers compare with a relative tolerance, because CSV and JSON round."""
    numeric = (int, float, np.integer, np.floating)
    if isinstance(left, numeric) and isinstance(right, numeric) and not isinstance(left, bool | np.bool_) \
            and not isinstance(right, bool | np.bool_):
        return math.isclose(float(left), float(right), rel_tol=1e-6, abs_tol=1e-12)
    return left == right


def baseline_trials(trials: pd.DataFrame, baseline: dict[str, Any]) -> pd.DataFrame:
    """Return the trials whose searched hyperparameters all equal the baseline space's values."""
    columns = [column for column in hyperparameter_columns(trials) if column in baseline]

    def matches(row: pd.Series) -> bool:
        for column in columns:
            value = row[column]
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue  # Not used by this trial's model.
            no_head = same_value(row.get("head.dense_layers", baseline.get("head.dense_layers")), 0)
            if column in HEAD_KEYS and no_head and same_value(baseline.get("head.dense_layers"), 0):
                continue
            if not same_value(value, baseline[column]):
                return False
        return True

    if trials.empty:
        return trials
    return trials[trials.apply(matches, axis=1)]


# --------------------------------------------------------------------------
# Predictions of the best model, cached in the run folder


def read_cached_predictions(run: RunFolder) -> pd.DataFrame | None:
    """Return predictions.csv of the run, or None when there is none or it cannot be read."""
    if not run.predictions_path.exists():
        return None
    try:
        frame = pd.read_csv(run.predictions_path, dtype={"file_name": str, "trial_id": str}, na_filter=False)
    except (OSError, ValueError, pd.errors.ParserError) as error:
        log.warning("ignoring the unreadable prediction cache %s (%s); computing it again",
                    run.predictions_path, error)
        return None
    if list(frame.columns) != PREDICTION_COLUMNS:
        log.warning("ignoring the prediction cache %s: its columns are %s, not %s", run.predictions_path,
                    list(frame.columns), PREDICTION_COLUMNS)
        return None
    return frame


def load_model_for_trial(run: RunFolder, trial_id: str, complete: bool) -> Any:
    """Return the trial's Keras model: from its checkpoint, or from best_model.keras of a complete search."""
    import keras

    from tuner.search import load_trial_model

    if not run.checkpoint_path(trial_id).exists() and complete and run.best_model_path.exists():
        # The search's final step saved the same best trial as best_model.keras.
        return keras.models.load_model(run.best_model_path, compile=False)
    return load_trial_model(run, trial_id)


def predict_validation(run: RunFolder, trial_id: str, validation: pd.DataFrame, image_size: int,
                       batch_size: int, complete: bool) -> pd.DataFrame:
    """Predict the age of every validation photo with a trial's model and write predictions.csv."""
    missing = [path for path in validation["path"] if not Path(path).is_file()]
    if missing:
        raise DataError(f"{len(missing)} of the {len(validation)} validation photos listed in {run.split_path} "
                        f"are missing, such as {missing[0]}. The report needs them once to compute the best "
                        "model's predictions: restore the dataset at that path.")
    log.info("computing the predictions of trial %s on %d validation photos", trial_id, len(validation))
    model = load_model_for_trial(run, trial_id, complete)
    dataset = make_dataset(validation, image_size, batch_size, training=False, cache=None)
    predicted = np.asarray(model.predict(dataset, verbose=0), dtype=np.float64).reshape(-1)
    frame = pd.DataFrame({"file_name": validation["file_name"].to_numpy(), "age": validation["age"].to_numpy(),
                          "predicted": predicted, "trial_id": trial_id})
    atomic_write_text(run.predictions_path, frame.to_csv(index=False, float_format="%.3f"))
    return frame


def best_predictions(run: RunFolder, trial_id: str, split: pd.DataFrame, image_size: int, batch_size: int,
                     complete: bool) -> tuple[pd.DataFrame, str]:
    """Return the best trial's validation predictions, as cached in predictions.csv, and where they came from.

    The source is "cached", "computed" (no cache yet) or "recomputed" (the
    cache was for another trial or other photos). The frame is always read
    back from the CSV, so the first report and later ones use the same
    rounded numbers.
    """
    validation = split[split["subset"] == "validation"].reset_index(drop=True)
    cached = read_cached_predictions(run)
    if cached is not None:
        same_trial = bool((cached["trial_id"] == trial_id).all()) and len(cached) > 0
        same_photos = set(cached["file_name"]) == set(validation["file_name"])
        if same_trial and same_photos:
            return cached, "cached"
        log.info("the prediction cache %s is for trial %s; the best trial is now %s", run.predictions_path,
                 ", ".join(sorted(set(cached["trial_id"]))), trial_id)
    predict_validation(run, trial_id, validation, image_size, batch_size, complete)
    fresh = read_cached_predictions(run)
    if fresh is None:
        raise RunFolderError(f"{run.predictions_path} could not be read back after writing it; "
                             "check the free disk space and the folder's permissions.")
    return fresh, "computed" if cached is None else "recomputed"


# --------------------------------------------------------------------------
# The report's numbers


def _age_statistics(ages: np.ndarray) -> dict[str, float | int]:
    return {"photos": int(len(ages)), "mean": float(np.mean(ages)), "median": float(np.median(ages)),
            "min": float(np.min(ages)), "max": float(np.max(ages))}


def _data_summary(split: pd.DataFrame, config: dict[str, Any]) -> dict[str, Any]:
    ages = {"all": split["age"].to_numpy(dtype=np.float64)}
    for subset in ("train", "validation"):
        ages[subset] = split.loc[split["subset"] == subset, "age"].to_numpy(dtype=np.float64)
    data_config = config.get("data", {})
    return {
        "photos": int(len(split)),
        "train": int(len(ages["train"])),
        "validation": int(len(ages["validation"])),
        "ages": {name: _age_statistics(values) for name, values in ages.items() if len(values)},
        "synthetic": bool(data_config.get("synthetic", False)),
        "limit": data_config.get("limit"),
    }


def _space_params(space: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the searched hyperparameters of a resolved space document: name, type and spec."""
    params = []
    for section, table in space.items():
        if not isinstance(table, dict):
            continue
        for key, value in table.items():
            if isinstance(value, dict) and "type" in value:
                spec = {name: item for name, item in value.items() if name != "type"}
                params.append({"name": f"{section}.{key}", "kind": value["type"], "spec": spec})
    return sorted(params, key=lambda param: param["name"])


def _wall_seconds(state: dict[str, Any], running: bool) -> float | None:
    earlier = state.get("wall_seconds")
    if not running:
        return float(earlier) if earlier is not None else None
    # state.json's wall_seconds counts the sessions before this one; started_at is when this one began.
    started = state.get("started_at")
    if not started:
        return None
    elapsed = (dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(started)).total_seconds()
    return float(earlier or 0.0) + max(0.0, elapsed)


def _search_summary(space: dict[str, Any], state: dict[str, Any], trials: pd.DataFrame,
                    running: bool) -> dict[str, Any]:
    search = space.get("search", {})
    tuner = search.get("tuner", "hyperband")
    if tuner == "hyperband":
        budget = {"max_epochs": search.get("max_epochs"), "factor": search.get("factor"),
                  "hyperband_iterations": search.get("hyperband_iterations")}
    else:
        budget = {"max_trials": search.get("max_trials"), "epochs": space.get("training", {}).get("epochs")}
    statuses = trials["status"]
    return {
        "tuner": tuner,
        "objective": search.get("objective", "val_mae"),
        "budget": budget,
        "trials": int(len(trials)),
        "completed": int((statuses == "COMPLETED").sum()),
        "failed": int(statuses.isin(["FAILED", "INVALID"]).sum()),
        "running": int((statuses == "RUNNING").sum()),
        "wall_seconds": _wall_seconds(state, running),
        "train_seconds": float(pd.to_numeric(trials["train_seconds"], errors="coerce").fillna(0.0).sum()),
        "hardware": state.get("hardware", {}),
    }


def _trial_summary(row: pd.Series, trials: pd.DataFrame, columns: list[str]) -> dict[str, Any]:
    trial_id = str(row["trial_id"])
    return {
        "trial_id": trial_id,
        "val_mae": float(row["val_mae"]),
        "val_mape": None if pd.isna(row["val_mape"]) else float(row["val_mape"]),
        "best_epoch": None if pd.isna(row["best_epoch"]) else int(row["best_epoch"]),
        **trial_totals(trial_id, trials),
        "hyperparameters": {column: _plain(row[column]) for column in columns},
    }


def _plain(value: Any) -> Any:
    """Turn a pandas cell into a plain Python value; NaN becomes None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def _selection(trials: pd.DataFrame, best: pd.Series) -> dict[str, Any]:
    done = trials[(trials["status"] == "COMPLETED") & trials["val_mae"].notna()]
    columns = hyperparameter_columns(trials)
    summary = _trial_summary(best, trials, columns)
    others = done[done["trial_id"] != summary["trial_id"]].sort_values(["val_mae", "trial_id"])
    ties = others[others["val_mae"] == best["val_mae"]]
    runner_up = others[others["val_mae"] > best["val_mae"]]
    summary["completed"] = int(len(done))
    summary["ties"] = ties["trial_id"].tolist()
    summary["runner_up"] = None if runner_up.empty else {"trial_id": str(runner_up.iloc[0]["trial_id"]),
                                                         "val_mae": float(runner_up.iloc[0]["val_mae"])}
    return summary


@dataclass
class BaselineSource:
    """The source of the baseline: its run, that run's trials and the baseline trial's row."""

    kind: str
    run: RunFolder
    trials: pd.DataFrame
    row: pd.Series
    overlap: tuple[int, int] | None = None


def find_baseline(run: RunFolder, trials: pd.DataFrame, split: pd.DataFrame,
                  baseline_dir: Path | None) -> BaselineSource | None:
    """Return the baseline: the best trial of `baseline_dir`, else a trial of this run with the baseline values.

    Raise AgetuneError when `baseline_dir` is given but has no completed trial.
    """
    if baseline_dir is not None:
        other = open_run(baseline_dir)
        other_trials = read_trials(other)
        row = select_best_trial(other_trials)
        if row is None:
            raise AgetuneError(f"the baseline run {other.path} has no completed trial yet. Wait for its first "
                               f"trial, or see {other.log_path}.")
        ours = set(split.loc[split["subset"] == "validation", "file_name"])
        theirs = load_split(other.split_path)
        theirs = set(theirs.loc[theirs["subset"] == "validation", "file_name"])
        overlap = None if theirs == ours else (len(theirs & ours), len(theirs))
        return BaselineSource("run", other, other_trials, row, overlap)
    if run.read_config().get("space_name") == "baseline":
        # A search of the shipped baseline space: its best trial is the baseline itself.
        row = select_best_trial(trials)
        return None if row is None else BaselineSource("trial", run, trials, row)
    if not hyperparameter_columns(trials):
        # Nothing searched: every trial trains the run's own configuration, not necessarily the baseline's.
        return None
    matching = baseline_trials(trials, dict(load_space("baseline").fixed))
    row = select_best_trial(matching) if not matching.empty else None
    return None if row is None else BaselineSource("trial", run, trials, row)


def fixed_settings(space: dict[str, Any]) -> dict[str, Any]:
    """Return the fixed settings of a resolved space document by `section.key`; searched ones are left out."""
    settings = {}
    for section, table in space.items():
        if isinstance(table, dict):
            settings.update({f"{section}.{key}": value for key, value in table.items() if not isinstance(value, dict)})
    return settings


def compared_settings(best: dict[str, Any], best_space: dict[str, Any], baseline: dict[str, Any] | None,
                      baseline_space: dict[str, Any] | None) -> list[tuple[str, Any, Any]]:
    """Return (setting, best value, baseline value) for every searched hyperparameter and every model setting
    on which the two runs differ; `UNCOMPARED_SETTINGS` are left out, since they do not shape the model."""
    best_values = {**fixed_settings(best_space), **best["hyperparameters"]}
    if baseline is None or baseline_space is None:
        return [(name, value, None) for name, value in best["hyperparameters"].items()]
    baseline_values = {**fixed_settings(baseline_space), **baseline["hyperparameters"]}
    rows = []
    for name in sorted(set(best_values) | set(baseline_values)):
        ours, theirs = best_values.get(name), baseline_values.get(name)
        searched = name in best["hyperparameters"] or name in baseline["hyperparameters"]
        if name.startswith(UNCOMPARED_SETTINGS) or not (searched or not same_value(ours, theirs)):
            continue
        rows.append((name, ours, theirs))
    return rows


def _comparison(best: dict[str, Any], baseline: dict[str, Any]) -> dict[str, float | None]:
    difference: dict[str, float | None] = {}
    for key in ("val_mae", "val_mape", "epochs", "train_seconds"):
        left, right = best.get(key), baseline.get(key)
        difference[key] = None if left is None or right is None else float(left) - float(right)
    return difference


def _hyperband_rounds(trials: pd.DataFrame) -> list[dict[str, Any]]:
    rows = []
    known = trials[trials["bracket"].notna()]
    for (bracket, round_), group in known.groupby(["bracket", "round"], sort=True):
        done = group[group["status"] == "COMPLETED"]
        rows.append({
            "bracket": int(bracket),
            "round": int(round_),
            "trials": int(len(group)),
            "completed": int(len(done)),
            "epochs_to": int(pd.to_numeric(group["epochs"], errors="coerce").max()),
            "epochs_trained": int(pd.to_numeric(group["epochs_trained"], errors="coerce").fillna(0).sum()),
            "best_val_mae": None if done["val_mae"].isna().all() else float(done["val_mae"].min()),
        })
    return rows


def _effects(params: list[dict[str, Any]], trials: pd.DataFrame) -> list[plots.Effect]:
    done = trials[(trials["status"] == "COMPLETED") & trials["val_mae"].notna()]
    effects = []
    for param in params:
        name = param["name"]
        if name not in done.columns or done[name].isna().all():
            continue
        if param["kind"] in ("choice", "boolean", "fixed"):
            kind = "choice"
        elif param["spec"].get("sampling", "linear") != "linear" or name.endswith("learning_rate"):
            kind = "log"
        else:
            kind = "number"
        effects.append(plots.Effect(name, kind))
    return effects


def sort_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """Return the trials by val MAE, best first; trials without one come last, by id."""
    return trials.sort_values(["val_mae", "trial_id"], na_position="last", kind="stable").reset_index(drop=True)


def _check_ages(legal_age: int, threshold: int) -> None:
    for name, value in (("--legal-age", legal_age), ("--threshold", threshold)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 120:
            raise AgetuneError(f"{name} must be a whole number of years from 1 to 120, got {value!r}.")


def build_report_data(run_dir: Path, baseline: Path | None = None, legal_age: int = 18,
                      threshold: int = 25) -> dict[str, Any]:
    """Gather every number of the report from a run folder (and a baseline run folder), computing predictions once.

    Raises RunFolderError for a folder that is not a run, and AgetuneError
    for a run without a completed trial.
    """
    _check_ages(legal_age, threshold)
    run = open_run(run_dir)
    config = run.read_config()
    state = run.read_state()
    space = config.get("space", {})
    trials = read_trials(run)
    records = read_trial_records(run)
    status = state.get("status", "unknown")
    running = status == "running" or bool((trials["status"] == "RUNNING").any())

    best_row = select_best_trial(trials)
    if best_row is None:
        raise AgetuneError(f"no trial in {run.path} has completed yet ({len(trials)} trials so far), so there is "
                           f"no model to report on. Wait for the first trial to finish, or see {run.log_path}.")
    split = load_split(run.split_path)
    best = _selection(trials, best_row)

    source = find_baseline(run, trials, split, baseline)
    baseline_data = None
    baseline_history: tuple[list[dict[str, Any]], int | None] | None = None
    if source is not None:
        baseline_data = _trial_summary(source.row, source.trials, hyperparameter_columns(source.trials))
        baseline_data.update({"source": source.kind, "run_name": source.run.name, "overlap": source.overlap,
                              "space": source.run.read_config().get("space", {}),
                              "is_best": source.kind == "trial" and baseline_data["trial_id"] == best["trial_id"]})
        baseline_history = chain_history(baseline_data["trial_id"], source.trials, read_trial_records(source.run)
                                         if source.kind == "run" else records)

    data_section = space.get("data", {})
    predictions, prediction_source = best_predictions(
        run, best["trial_id"], split, int(data_section.get("image_size", 224)),
        int(data_section.get("batch_size", 32)), complete=status == "complete")
    true = predictions["age"].to_numpy(dtype=np.float64)
    predicted = predictions["predicted"].to_numpy(dtype=np.float64)
    errors = predicted - true

    check = age_check(true, predicted, legal_age, threshold)
    check["interval"] = (wilson_interval(check["minors_passed"], check["minors"]) if check["minors"] else None)
    thresholds = range(min(CHECK_THRESHOLDS.start, threshold), max(CHECK_THRESHOLDS.stop, threshold + 1))
    params = _space_params(space)

    return {
        "run": {"name": run.name, "space_name": config.get("space_name", "?"), "status": status,
                "partial": running, "interrupted": status == "interrupted"},
        "data": _data_summary(split, config),
        "search": _search_summary(space, state, trials, running),
        "space": params,
        "best": best,
        "baseline": baseline_data,
        "comparison": None if baseline_data is None else _comparison(best, baseline_data),
        "settings": compared_settings(best, space, baseline_data,
                                      None if baseline_data is None else baseline_data["space"]),
        "errors": {"trial_id": best["trial_id"], "photos": int(len(predictions)),
                   "mae": float(np.mean(np.abs(errors))), "bias": float(np.mean(errors)),
                   "bands": band_errors(true, predicted).to_dict("records"), "source": prediction_source},
        "age_check": check,
        "age_check_curve": age_check_curve(true, predicted, legal_age, thresholds).to_dict("records"),
        "hyperband": _hyperband_rounds(trials) if space.get("search", {}).get("tuner") == "hyperband" else None,
        "effects": _effects(params, trials),
        "histories": {"best": chain_history(best["trial_id"], trials, records), "baseline": baseline_history},
        "trials": sort_trials(trials),
        "predictions": predictions,
        "split": split,
    }


# --------------------------------------------------------------------------
# The document: sections of localized, formatted blocks, rendered by the templates


@dataclass
class Block:
    """One piece of a section: a paragraph, a list, a table, a figure or a gallery."""

    kind: str
    text: str = ""
    style: str = ""
    items: list[str] = field(default_factory=list)
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    numeric: list[bool] = field(default_factory=list)
    highlight: int | None = None
    file: str = ""
    png: bytes = b""
    photos: list[dict[str, str]] = field(default_factory=list)

    @property
    def data_uri(self) -> str:
        mime = "image/jpeg" if self.file.endswith(".jpg") else "image/png"
        return f"data:{mime};base64," + base64.b64encode(self.png).decode("ascii")


@dataclass
class Section:
    """A headed part of the report."""

    key: str
    title: str
    blocks: list[Block] = field(default_factory=list)


def years(value: float | None) -> str:
    """Format years (MAE, bias, ages) with two decimals; None becomes a dash."""
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"


def signed(value: float | None) -> str:
    """Format a difference with its sign and two decimals."""
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:+.2f}"


def percent(share: float | None) -> str:
    """Format a share in [0, 1] as a percentage with one decimal."""
    return "-" if share is None else f"{100.0 * share:.1f}%"


def hp_value(value: Any) -> str:
    """Format a hyperparameter value as the space file writes it."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float | np.floating):
        return str(int(value)) if float(value).is_integer() else f"{float(value):.3g}"
    return str(value)


def duration(seconds: float | None, text: dict[str, str]) -> str:
    """Format seconds as hours and minutes, or minutes and seconds."""
    if seconds is None:
        return text["unknown"]
    minutes, rest = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return text["duration_hours"].format(hours=hours, minutes=minutes)
    if minutes:
        return text["duration_minutes"].format(minutes=minutes, seconds=rest)
    return text["duration_seconds"].format(seconds=rest)


def _describe_spec(param: dict[str, Any]) -> str:
    spec = param["spec"]
    if param["kind"] == "choice":
        return ", ".join(hp_value(value) for value in spec["values"])
    if param["kind"] in ("int", "float"):
        described = f"{hp_value(spec['min'])} .. {hp_value(spec['max'])}"
        if spec.get("step"):
            described += f", step {hp_value(spec['step'])}"
        if spec.get("sampling", "linear") != "linear":
            described += f" ({spec['sampling']})"
        return described
    if param["kind"] == "boolean":
        return "false, true"
    return hp_value(spec.get("value"))


def _summary_blocks(data: dict[str, Any], text: dict[str, str]) -> list[Block]:
    best, baseline, comparison = data["best"], data["baseline"], data["comparison"]
    if baseline is None:
        difference = text["summary_no_baseline"]
    elif baseline["is_best"]:
        difference = text["summary_is_baseline"]
    elif round(comparison["val_mae"], 2) < 0:
        difference = text["summary_better"].format(years=years(-comparison["val_mae"]))
    elif round(comparison["val_mae"], 2) > 0:
        difference = text["summary_worse"].format(years=years(comparison["val_mae"]))
    else:
        difference = text["summary_same"]
    lines = [text["summary_best"].format(trial=best["trial_id"], mae=years(best["val_mae"]), difference=difference)]
    check = data["age_check"]
    values = {"threshold": check["threshold"], "legal_age": check["legal_age"],
              "share": percent(check["minors_passed_share"]), "passed": check["minors_passed"],
              "minors": check["minors"], "adult_share": percent(check["adults_checked_share"]),
              "checked": check["adults_checked"], "adults": check["adults"]}
    lines.append(text["summary_minors" if check["minors"] else "summary_no_minors"].format(**values))
    return [Block("summary", items=lines)]


def _data_blocks(data: dict[str, Any], text: dict[str, str], figures: dict[str, bytes]) -> list[Block]:
    summary = data["data"]
    blocks = [Block("paragraph", text["data_counts"].format(photos=summary["photos"], train=summary["train"],
                                                             validation=summary["validation"]))]
    if summary["limit"]:
        blocks.append(Block("paragraph", text["data_limit"].format(limit=summary["limit"])))
    names = [name for name in ("all", "train", "validation") if name in summary["ages"]]
    headers = [text["statistic"]] + [text["all_photos" if name == "all" else name] for name in names]
    rows = [[text["photos"]] + [str(summary["ages"][name]["photos"]) for name in names]]
    for key, label in (("mean", "age_mean"), ("median", "age_median"), ("min", "age_min"), ("max", "age_max")):
        rows.append([text[label]] + [years(summary["ages"][name][key]) for name in names])
    blocks.append(Block("table", headers=headers, rows=rows, numeric=[False] + [True] * len(names)))
    blocks.append(Block("figure", text=text["plot_ages_title"], file="ages.png", png=figures["ages.png"]))
    return blocks


def _search_blocks(data: dict[str, Any], text: dict[str, str]) -> list[Block]:
    search = data["search"]
    budget = search["budget"]
    if search["tuner"] == "hyperband":
        budget_text = text["budget_hyperband"].format(max_epochs=budget["max_epochs"], factor=budget["factor"],
                                                      iterations=budget["hyperband_iterations"])
    else:
        budget_text = text["budget_trials"].format(max_trials=budget["max_trials"], epochs=budget["epochs"])
    wall = duration(search["wall_seconds"], text)
    if data["run"]["partial"] and search["wall_seconds"] is not None:
        wall = text["wall_time_so_far"].format(duration=wall)
    hardware = search["hardware"]
    if hardware:
        gpus = ", ".join(hardware.get("gpus") or []) or text["no_gpu"]
        hardware_text = text["hardware_value"].format(
            host=hardware.get("host", "?"), cpus=hardware.get("cpus", "?"), gpus=gpus,
            tensorflow=hardware.get("tensorflow", "?"), keras=hardware.get("keras", "?"),
            keras_tuner=hardware.get("keras_tuner", "?"))
    else:
        hardware_text = text["unknown"]
    rows = [
        [text["tuner"], search["tuner"]],
        [text["objective"], search["objective"]],
        [text["budget"], budget_text],
        [text["trials_run"], str(search["trials"])],
        [text["trials_completed"], str(search["completed"])],
        [text["trials_failed"], str(search["failed"])],
    ]
    if search["running"]:
        rows.append([text["trials_running"], str(search["running"])])
    rows += [[text["wall_time"], wall], [text["train_time"], duration(search["train_seconds"], text)],
             [text["hardware"], hardware_text]]
    blocks = [Block("table", headers=[text["setting"], text["value"]], rows=rows, numeric=[False, False])]

    space_name = data["run"]["space_name"]
    if data["space"]:
        blocks.append(Block("subheading", text["space_heading"]))
        blocks.append(Block("paragraph", text["space_intro"].format(space=space_name)))
        blocks.append(Block("table", headers=[text["hyperparameter"], text["kind"], text["values"]],
                            rows=[[f"`{param['name']}`", param["kind"], _describe_spec(param)]
                                  for param in data["space"]],
                            numeric=[False, False, False]))
    else:
        blocks.append(Block("paragraph", text["space_none"].format(space=space_name)))
    return blocks


def _selection_blocks(data: dict[str, Any], text: dict[str, str]) -> list[Block]:
    best, baseline, comparison = data["best"], data["baseline"], data["comparison"]
    why = [text["selection_why"].format(trial=best["trial_id"], completed=best["completed"],
                                        mae=years(best["val_mae"]), epoch=best["best_epoch"])]
    if best["ties"]:
        why.append(text["selection_tie"].format(trials=", ".join(best["ties"]), trial=best["trial_id"]))
    if best["runner_up"]:
        why.append(text["selection_runner_up"].format(trial=best["runner_up"]["trial_id"],
                                                      mae=years(best["runner_up"]["val_mae"])))
    blocks = [Block("paragraph", " ".join(why)), Block("paragraph", text["selection_caveat"], style="muted")]

    if baseline is None:
        blocks.append(Block("paragraph", text["baseline_none"].format(run=data["run"]["name"]), style="note"))
    else:
        if baseline["source"] == "run":
            blocks.append(Block("paragraph", text["baseline_from_run"].format(trial=baseline["trial_id"],
                                                                               run=baseline["run_name"])))
        else:
            blocks.append(Block("paragraph", text["baseline_from_trial"].format(trial=baseline["trial_id"])))
        if baseline["overlap"]:
            shared, total = baseline["overlap"]
            blocks.append(Block("paragraph", text["baseline_other_photos"].format(shared=shared, total=total),
                                style="note"))

    headers = [text["metric"], text["best_model"]]
    if baseline is not None:
        headers += [text["baseline"], text["difference"]]
    metrics = [
        ("val_mae_years", "val_mae", years, signed),
        ("val_mape_percent", "val_mape", years, signed),
        ("epochs", "epochs", lambda value: str(int(value)), lambda value: f"{int(value):+d}"),
        ("training_time", "train_seconds", lambda value: duration(value, text),
         lambda value: ("+" if value >= 0 else "-") + duration(abs(value), text)),
    ]
    rows = []
    for label, key, show, show_difference in metrics:
        row = [text[label], show(best[key]) if best[key] is not None else "-"]
        if baseline is not None:
            row.append(show(baseline[key]) if baseline[key] is not None else "-")
            row.append(show_difference(comparison[key]) if comparison[key] is not None else "-")
        rows.append(row)
    blocks.append(Block("table", headers=headers, rows=rows, numeric=[False] + [True] * (len(headers) - 1)))
    if baseline is not None:
        blocks.append(Block("paragraph", text["difference_note"], style="muted"))

    settings = data["settings"]
    if settings:
        hp_headers = [text["hyperparameter"], text["best_model"]]
        if baseline is not None:
            hp_headers.append(text["baseline"])
        hp_rows = []
        for name, ours, theirs in settings:
            row = [f"`{name}`", hp_value(ours)]
            if baseline is not None:
                row.append(hp_value(theirs))
            hp_rows.append(row)
        if baseline is not None:
            blocks.append(Block("paragraph", text["settings_intro"]))
        blocks.append(Block("table", headers=hp_headers, rows=hp_rows, numeric=[False] * len(hp_headers)))
    return blocks


def _trials_blocks(data: dict[str, Any], text: dict[str, str]) -> list[Block]:
    trials = data["trials"]
    columns = hyperparameter_columns(trials)
    hyperband = data["hyperband"] is not None
    has_messages = trials["message"].notna().any()
    headers = [text["trial"], text["status"]]
    if hyperband:
        headers += [text["bracket"], text["round"]]
    headers += [text["epochs"], text["best_epoch"], text["val_mae"], text["val_mape"], text["train_mae"],
                text["time"]] + [f"`{column}`" for column in columns]
    if has_messages:
        headers.append(text["message"])
    rows = []
    for _, row in trials.iterrows():
        trial_id = str(row["trial_id"])
        totals = trial_totals(trial_id, trials)
        cells = [trial_id, text.get(f"status_{row['status']}", str(row["status"]).lower())]
        if hyperband:
            cells += [hp_value(row["bracket"]), hp_value(row["round"])]
        cells += [str(int(totals["epochs"])), hp_value(row["best_epoch"]), years(_plain(row["val_mae"])),
                  years(_plain(row["val_mape"])), years(_plain(row["mae"])),
                  duration(_plain(row["train_seconds"]), text) if pd.notna(row["train_seconds"]) else "-"]
        cells += [hp_value(_plain(row[column])) for column in columns]
        if has_messages:
            cells.append(redact_photos(row["message"]) if isinstance(row["message"], str) else "")
        rows.append(cells)
    numeric = [False, False] + [True] * (2 if hyperband else 0) + [True] * 6 + [False] * len(columns)
    numeric += [False] if has_messages else []
    best_row = trials.index[trials["trial_id"] == data["best"]["trial_id"]][0]
    return [Block("paragraph", text["trials_intro"]),
            Block("table", headers=headers, rows=rows, numeric=numeric, highlight=int(best_row))]


def redact_photos(message: str) -> str:
    """Replace photo file names and paths in an error message, so that the report names no photo."""
    return PHOTO_NAME.sub("[photo]", message)


def _hyperband_blocks(data: dict[str, Any], text: dict[str, str]) -> list[Block]:
    factor = data["search"]["budget"].get("factor")
    headers = [text["bracket"], text["round"], text["trials_count"], text["completed_count"], text["epochs_to"],
               text["epochs_trained"], text["best_val_mae"]]
    rows = [[str(entry["bracket"]), str(entry["round"]), str(entry["trials"]), str(entry["completed"]),
             str(entry["epochs_to"]), str(entry["epochs_trained"]), years(entry["best_val_mae"])]
            for entry in data["hyperband"]]
    return [Block("paragraph", text["hyperband_intro"].format(factor=factor)),
            Block("table", headers=headers, rows=rows, numeric=[True] * len(headers))]


def _errors_blocks(data: dict[str, Any], text: dict[str, str], figures: dict[str, bytes]) -> list[Block]:
    errors = data["errors"]
    blocks = [Block("paragraph", text["errors_intro"].format(trial=errors["trial_id"], photos=errors["photos"],
                                                              mae=years(errors["mae"]), bias=signed(errors["bias"])))]
    if errors["source"] == "recomputed":
        blocks.append(Block("paragraph", text["errors_model_changed"], style="muted"))
    blocks.append(Block("figure", text=text["plot_scatter_title"], file="predictions.png",
                        png=figures["predictions.png"]))
    rows = [[band["band"], str(band["photos"]), years(band["mae"]), signed(band["bias"])] for band in errors["bands"]]
    blocks.append(Block("table", headers=[text["band"], text["photos"], text["mae_years"], text["bias_years"]],
                        rows=rows, numeric=[False, True, True, True]))
    blocks.append(Block("paragraph", text["bands_note"], style="muted"))
    blocks.append(Block("figure", text=text["plot_bands_title"], file="age_bands.png", png=figures["age_bands.png"]))
    return blocks


def _check_blocks(data: dict[str, Any], text: dict[str, str], figures: dict[str, bytes]) -> list[Block]:
    check = data["age_check"]
    values = {"threshold": check["threshold"], "legal_age": check["legal_age"]}
    items = []
    if check["minors"]:
        low, high = check["interval"]
        items.append(text["check_minors"].format(passed=check["minors_passed"], minors=check["minors"],
                                                 share=percent(check["minors_passed_share"]), low=percent(low),
                                                 high=percent(high), **values))
    else:
        items.append(text["check_no_minors"].format(**values))
    if check["adults"]:
        items.append(text["check_adults"].format(checked=check["adults_checked"], adults=check["adults"],
                                                 share=percent(check["adults_checked_share"]), **values))
    else:
        items.append(text["check_no_adults"].format(**values))
    curve = data["age_check_curve"]
    rows = [[str(row["threshold"]),
             f"{percent(row['minors_passed_share'])} ({row['minors_passed']})",
             f"{percent(row['adults_checked_share'])} ({row['adults_checked']})"] for row in curve]
    return [
        Block("paragraph", text["check_rule"].format(**values)),
        Block("list", items=items),
        Block("paragraph", text["check_curve_intro"].format(first=curve[0]["threshold"], last=curve[-1]["threshold"])),
        Block("figure", text=text["plot_check_title"], file="age_check.png", png=figures["age_check.png"]),
        Block("table", headers=[text["threshold"], text["minors_passed"], text["adults_checked"]], rows=rows,
              numeric=[True, True, True],
              highlight=[row["threshold"] for row in curve].index(check["threshold"])),
    ]


def _gallery_blocks(data: dict[str, Any], text: dict[str, str]) -> list[Block]:
    from PIL import Image

    predictions = data["predictions"].assign(error=lambda frame: (frame["predicted"] - frame["age"]).abs())
    worst = predictions.sort_values("error", ascending=False).head(GALLERY_SIZE)
    paths = data["split"].set_index("file_name")["path"]
    photos = []
    for index, (_, row) in enumerate(worst.iterrows(), start=1):
        path = Path(paths[row["file_name"]])
        if not path.is_file():
            log.warning("gallery: photo %s not found; left out", path)
            continue
        with Image.open(path) as image:
            image = image.convert("RGB")
            image.thumbnail((GALLERY_PIXELS, GALLERY_PIXELS))
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=85)
        # .jpg, which .gitignore keeps out of the repository, unlike the report's PNGs.
        name = f"gallery-{index:02d}.jpg"
        photos.append({"file": name, "bytes": buffer.getvalue(),
                       "caption": text["gallery_caption"].format(file=row["file_name"], age=years(row["age"]),
                                                                 predicted=years(row["predicted"]))})
    block = Block("gallery", photos=[{**photo, "uri": "data:image/jpeg;base64,"
                                      + base64.b64encode(photo["bytes"]).decode("ascii")} for photo in photos])
    return [Block("paragraph", text["gallery_warning"], style="warning"), block]


def make_figures(data: dict[str, Any], text: dict[str, str]) -> dict[str, bytes]:
    """Draw every figure of the report; return PNG bytes by file name."""
    split, predictions = data["split"], data["predictions"]
    true = predictions["age"].to_numpy(dtype=np.float64)
    predicted = predictions["predicted"].to_numpy(dtype=np.float64)
    check = data["age_check"]
    figures = {
        "ages.png": plots.age_histogram(split.loc[split["subset"] == "train", "age"].to_numpy(dtype=np.float64),
                                        split.loc[split["subset"] == "validation", "age"].to_numpy(np.float64),
                                        text),
        "predictions.png": plots.predicted_vs_true(true, predicted, check["legal_age"], check["threshold"], text),
        "age_bands.png": plots.band_errors(pd.DataFrame(data["errors"]["bands"]), text),
        "age_check.png": plots.age_check_curves(pd.DataFrame(data["age_check_curve"]), check["threshold"], text),
    }
    curves = []
    for key, color, label in (("best", plots.BLUE, "curve_best"), ("baseline", plots.ORANGE, "curve_baseline")):
        history = data["histories"][key]
        owner = data[key]
        if history is None or owner is None or not history[0]:
            continue
        if key == "baseline" and owner["source"] == "trial" and owner["trial_id"] == data["best"]["trial_id"]:
            continue
        entries, continued_at = history
        curves.append(plots.Curve(text[label].format(trial=owner["trial_id"]),
                                  [entry["epoch"] for entry in entries],
                                  [entry.get("mae", math.nan) for entry in entries],
                                  [entry.get("val_mae", math.nan) for entry in entries], color, continued_at))
    if curves:
        figures["learning_curves.png"] = plots.learning_curves(curves, text)
    if data["effects"]:
        done = data["trials"][(data["trials"]["status"] == "COMPLETED") & data["trials"]["val_mae"].notna()]
        figures["hyperparameters.png"] = plots.hyperparameter_effects(done, data["effects"],
                                                                      data["best"]["trial_id"], text)
    return figures


def build_document(data: dict[str, Any], text: dict[str, str], figures: dict[str, bytes],
                   gallery: bool = False) -> dict[str, Any]:
    """Lay the report out as a title, banners, a summary and sections of blocks, in one language."""
    run = data["run"]
    banners = []
    if run["partial"]:
        banners.append(Block("paragraph", text["partial"].format(trials=data["search"]["trials"]), style="warning"))
    elif run["interrupted"]:
        banners.append(Block("paragraph", text["interrupted"].format(trials=data["search"]["trials"]),
                             style="warning"))
    if data["data"]["synthetic"]:
        banners.append(Block("paragraph", text["synthetic"], style="note"))

    sections = [
        Section("data", text["data_heading"], _data_blocks(data, text, figures)),
        Section("search", text["search_heading"], _search_blocks(data, text)),
        Section("selection", text["selection_heading"], _selection_blocks(data, text)),
    ]
    if "learning_curves.png" in figures:
        sections.append(Section("curves", text["curves_heading"], [
            Block("paragraph", text["curves_intro"]),
            Block("figure", text=text["plot_curves_title"], file="learning_curves.png",
                  png=figures["learning_curves.png"])]))
    sections.append(Section("trials", text["trials_heading"], _trials_blocks(data, text)))
    if "hyperparameters.png" in figures:
        sections.append(Section("effects", text["effects_heading"], [
            Block("paragraph", text["effects_intro"]),
            Block("figure", text=text["plot_effects_title"], file="hyperparameters.png",
                  png=figures["hyperparameters.png"])]))
    if data["hyperband"]:
        sections.append(Section("hyperband", text["hyperband_heading"], _hyperband_blocks(data, text)))
    sections.append(Section("errors", text["errors_heading"], _errors_blocks(data, text, figures)))
    sections.append(Section("check", text["check_heading"], _check_blocks(data, text, figures)))
    if gallery:
        sections.append(Section("gallery", text["gallery_heading"], _gallery_blocks(data, text)))

    written = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return {
        "title": text["title"].format(run=run["name"]),
        "subtitle": text["subtitle"].format(run=run["name"], space=run["space_name"], written=written),
        "banners": banners,
        "summary_heading": text["summary_heading"],
        "summary": _summary_blocks(data, text)[0],
        "sections": sections,
    }


# --------------------------------------------------------------------------
# Rendering and writing


def _inline_html(value: str) -> Markup:
    """Escape text for HTML and turn `code` spans into <code> elements."""
    escaped = str(escape(value))
    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped))


def _markdown_cell(value: str) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def render(document: dict[str, Any], template: str, lang: str) -> str:
    """Render the document with one of the templates (report.html.j2 or report.md.j2)."""
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
                                     autoescape=template.endswith(".html.j2"), trim_blocks=True,
                                     lstrip_blocks=True, keep_trailing_newline=True,
                                     undefined=jinja2.StrictUndefined)
    environment.filters["inline"] = _inline_html
    environment.filters["cell"] = _markdown_cell
    return environment.get_template(template).render(lang=lang, **document)


def default_report_dir(run: RunFolder) -> Path:
    """Return reports/<run name>, relative to the current directory: the folder used when --out is not given."""
    return Path("reports") / run.name


def _clear_old_outputs(folder: Path) -> None:
    # An earlier report in the same folder may have had other figures, or a --gallery of photos; a report
    # without --gallery must not leave photos behind.
    for path in [folder / name for name in FIGURE_FILES] + list(folder.glob("gallery-*.jpg")):
        path.unlink(missing_ok=True)


def write_report(run_dir: Path, out: Path | None = None, lang: str = "en", baseline: Path | None = None,
                 legal_age: int = 18, threshold: int = 25, gallery: bool = False) -> Path:
    """Write report.html, report.md with its PNGs, and trials.csv for a run; return the report folder.

    Raises RunFolderError when `run_dir` (or `baseline`) is not a run folder,
    and AgetuneError when the run has no completed trial, `lang` is not
    available or `out` is the run folder.
    """
    text = texts(lang)
    run = open_run(run_dir)
    folder = Path(out) if out is not None else default_report_dir(run)
    if folder.resolve() == run.path.resolve():
        raise AgetuneError(f"--out {folder} is the run folder itself; the report would overwrite its trials.csv. "
                           "Pass another folder.")
    data = build_report_data(run.path, baseline=baseline, legal_age=legal_age, threshold=threshold)
    figures = make_figures(data, text)
    document = build_document(data, text, figures, gallery=gallery)

    folder.mkdir(parents=True, exist_ok=True)
    _clear_old_outputs(folder)
    for name, png in figures.items():
        (folder / name).write_bytes(png)
    if gallery:
        for section in document["sections"]:
            for block in section.blocks:
                for photo in block.photos:
                    (folder / photo["file"]).write_bytes(photo["bytes"])
        log.warning("the report in %s shows photos of people from the dataset; keep it private and out of any "
                    "repository", folder)
    trials = data["trials"].copy()
    trials["message"] = trials["message"].map(lambda value: redact_photos(value) if isinstance(value, str) else value)
    # Plain writes, not atomic ones: temporary files are private (mode 0600), and a report is meant to be shared.
    (folder / "trials.csv").write_text(trials.to_csv(index=False), encoding="utf-8")
    (folder / "report.md").write_text(render(document, "report.md.j2", lang), encoding="utf-8")
    (folder / "report.html").write_text(render(document, "report.html.j2", lang), encoding="utf-8")
    log.info("report on %s written to %s", run.path, folder)
    return folder
