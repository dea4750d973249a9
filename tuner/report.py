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

The pure computations are in `tuner.report_metrics` and the document layout
and figures in `tuner.report_document`. Their public names are re-exported
here.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup, escape

from tuner import plots
from tuner.data import load_split, make_dataset
from tuner.errors import AgetuneError, DataError, RunFolderError
# Besides the names used here, these imports re-export the other public names of both modules, because
# callers import them from tuner.report.
from tuner.report_document import (GALLERY_PIXELS, GALLERY_SIZE, PHOTO_NAME, Block, Section,  # noqa: F401
                                   build_document, duration, hp_value, make_figures, percent, redact_photos,
                                   signed, years)
from tuner.report_metrics import (HEAD_KEYS, UNCOMPARED_SETTINGS, _plain, age_check,  # noqa: F401
                                  age_check_curve, band_errors, baseline_trials, chain_history,
                                  compared_settings, fixed_settings, hyperparameter_columns, prediction_spread,
                                  same_value, trial_totals, wilson_interval)
from tuner.report_text import texts
from tuner.run import RunFolder, atomic_write_text, open_run, read_trial_records, read_trials, select_best_trial
from tuner.space import load_space

log = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
#: Thresholds of the age-check curves, in years of estimated age.
CHECK_THRESHOLDS = range(18, 31)
PREDICTION_COLUMNS = ["file_name", "age", "predicted", "trial_id"]
FIGURE_FILES = ("ages.png", "learning_curves.png", "hyperparameters.png", "predictions.png", "age_bands.png",
                "age_check.png")


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
                   "bands": band_errors(true, predicted).to_dict("records"), "source": prediction_source,
                   "spread": prediction_spread(true, predicted)},
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


def default_report_dir(run: RunFolder, lang: str = "en") -> Path:
    """Return the folder used when --out is not given: reports/<run name>, and its ru/ subfolder for Russian.

    The path is relative to the current directory. Each language has its own
    folder because both write report.html and report.md.
    """
    folder = Path("reports") / run.name
    return folder if lang == "en" else folder / lang


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
    folder = Path(out) if out is not None else default_report_dir(run, lang)
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
