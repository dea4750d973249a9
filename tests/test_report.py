"""Tests for tuner.report: the numbers, the age check, the cache, the languages and the rendered files."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from tuner import report
from tuner.cli import app
from tuner.errors import AgetuneError, RunFolderError
from tuner.report import (age_check, age_check_curve, band_errors, baseline_trials, build_report_data,
                          chain_history, prediction_spread, redact_photos, trial_totals, wilson_interval,
                          write_report)
from tuner.report_text import EN, RU, headings, texts
from tuner.run import TRIAL_COLUMNS, RunFolder, open_run, read_trials

REPO = Path(__file__).resolve().parents[1]
FIGURES = set(report.FIGURE_FILES)


def copy_run(source: Path, target: Path, link_checkpoints: bool = False) -> Path:
    """Copy a run folder without its models (tiny_run's are 90 to 270 MB each); the checkpoints may become links.

    Tests that reuse the cached predictions need no model; a link lets the
    report load a checkpoint without copying it or writing into the source.
    """
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("best_model.keras", "*.weights.h5"))
    if link_checkpoints:
        for checkpoint in source.glob("tuner/trial_*/*.weights.h5"):
            (target / checkpoint.relative_to(source)).symlink_to(checkpoint.resolve())
    return target


@pytest.fixture(scope="module")
def report_run(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of tiny_run with predictions.csv, computed by its first English report."""
    run_dir = copy_run(tiny_run, tmp_path_factory.mktemp("report") / "run", link_checkpoints=True)
    write_report(run_dir, out=run_dir.parent / "en", lang="en", baseline=None, legal_age=18, threshold=25,
                 gallery=False)
    return run_dir


@pytest.fixture(scope="module")
def english(report_run: Path) -> dict[str, Any]:
    folder = report_run.parent / "en"
    return {"folder": folder, "md": (folder / "report.md").read_text(encoding="utf-8"),
            "html": (folder / "report.html").read_text(encoding="utf-8"),
            "data": build_report_data(report_run)}


@pytest.fixture(scope="module")
def russian(report_run: Path) -> dict[str, str]:
    folder = write_report(report_run, out=report_run.parent / "ru", lang="ru", baseline=None, legal_age=18,
                          threshold=25, gallery=False)
    return {"md": (folder / "report.md").read_text(encoding="utf-8"),
            "html": (folder / "report.html").read_text(encoding="utf-8")}


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.write_text(json.dumps(document), encoding="utf-8")


class ConstantModel:
    """Stands in for a Keras model: predicts the same age for every photo of the dataset."""

    def __init__(self, age: float) -> None:
        self.age = age

    def predict(self, dataset: Any, verbose: int = 0) -> np.ndarray:
        count = sum(int(images.shape[0]) for images, _ in dataset)
        return np.full((count, 1), self.age, dtype=np.float32)


# --------------------------------------------------------------------------
# Computations on hand-made numbers


def test_age_check_hand_made_shares() -> None:
    true = [10, 15, 17, 16, 18, 20, 30, 40]
    predicted = [26, 24, 25, 30, 17, 24.9, 25, 50]

    check = age_check(true, predicted, legal_age=18, threshold=25)

    assert check["minors"] == 4
    assert check["minors_passed"] == 3  # 26, 25 and 30 are at or above 25; 24 is not
    assert check["minors_passed_share"] == 0.75
    assert check["adults"] == 4
    assert check["adults_checked"] == 2  # 17 and 24.9 are under 25
    assert check["adults_checked_share"] == 0.5


def test_age_check_other_legal_age() -> None:
    check = age_check([18, 20, 21, 30], [22, 21, 19, 20], legal_age=21, threshold=21)

    assert check["minors"] == 2
    assert check["minors_passed"] == 2
    assert check["minors_passed_share"] == 1.0
    assert check["adults"] == 2
    assert check["adults_checked"] == 2
    assert check["adults_checked_share"] == 1.0


def test_age_check_without_minors() -> None:
    check = age_check([30.0, 40.0], [20.0, 45.0], legal_age=18, threshold=25)

    assert check["minors"] == 0
    assert check["minors_passed"] == 0
    assert check["minors_passed_share"] is None
    assert check["adults_checked_share"] == 0.5


def test_age_check_curve_per_threshold() -> None:
    curve = age_check_curve(np.array([16.0, 17.0, 30.0]), np.array([20.0, 22.0, 21.0]), 18, [20, 21, 22, 23])

    assert curve["threshold"].tolist() == [20, 21, 22, 23]
    assert curve["minors_passed"].tolist() == [2, 1, 1, 0]
    assert curve["adults_checked"].tolist() == [0, 0, 1, 1]


def test_wilson_interval_closed_forms() -> None:
    z = 1.96
    low, high = wilson_interval(0, 3)
    assert low == 0.0
    assert high == pytest.approx(z * z / (3 + z * z), rel=1e-12)
    low, high = wilson_interval(5, 5)
    assert low == pytest.approx(5 / (5 + z * z), rel=1e-12)
    assert high == 1.0


def test_band_errors_hand_made() -> None:
    true = [5.0, 12.5, 13.0, 17.5, 30.0, 70.0]
    predicted = [7.0, 9.5, 13.0, 19.5, 25.0, 80.0]

    bands = band_errors(true, predicted).set_index("band")

    assert bands.index.tolist() == ["0-12", "13-17", "18-24", "25-34", "35-44", "45-54", "55-64", "65+"]
    assert bands.loc["0-12", "photos"] == 2
    assert bands.loc["0-12", "mae"] == 2.5  # errors +2 and -3
    assert bands.loc["0-12", "bias"] == -0.5
    assert bands.loc["13-17", "photos"] == 2
    assert bands.loc["13-17", "mae"] == 1.0  # errors 0 and +2
    assert bands.loc["13-17", "bias"] == 1.0
    assert bands.loc["25-34", "mae"] == 5.0
    assert bands.loc["25-34", "bias"] == -5.0
    assert bands.loc["65+", "mae"] == 10.0
    assert bands.loc["65+", "bias"] == 10.0
    assert bands.loc["18-24", "photos"] == 0
    assert math.isnan(bands.loc["18-24", "mae"])
    assert math.isnan(bands.loc["18-24", "bias"])


def hyperband_trials() -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    """Trial b continues trial a from epoch 2 (Hyperband round 1); c is another model of round 0."""
    rows = [
        {"trial_id": "a", "status": "COMPLETED", "bracket": 1, "round": 0, "parent_trial": None,
         "initial_epoch": 0, "epochs": 2, "epochs_trained": 2, "val_mae": 9.0, "train_seconds": 10.0},
        {"trial_id": "b", "status": "COMPLETED", "bracket": 1, "round": 1, "parent_trial": "a",
         "initial_epoch": 2, "epochs": 4, "epochs_trained": 2, "val_mae": 7.0, "train_seconds": 12.5},
        {"trial_id": "c", "status": "COMPLETED", "bracket": 1, "round": 0, "parent_trial": None,
         "initial_epoch": 0, "epochs": 2, "epochs_trained": 2, "val_mae": 11.0, "train_seconds": 9.0},
    ]
    trials = pd.DataFrame(rows).reindex(columns=TRIAL_COLUMNS)
    records = {
        "a": {"history": [{"epoch": 1, "mae": 20.0, "val_mae": 15.0}, {"epoch": 2, "mae": 12.0, "val_mae": 9.0}]},
        "b": {"history": [{"epoch": 3, "mae": 9.0, "val_mae": 8.0}, {"epoch": 4, "mae": 7.5, "val_mae": 7.0}]},
        "c": {"history": [{"epoch": 1, "mae": 21.0, "val_mae": 16.0}, {"epoch": 2, "mae": 14.0, "val_mae": 11.0}]},
    }
    return trials, records


def test_chain_history_prepends_parent() -> None:
    trials, records = hyperband_trials()

    history, continued_at = chain_history("b", trials, records)

    assert [entry["epoch"] for entry in history] == [1, 2, 3, 4]
    assert [entry["val_mae"] for entry in history] == [15.0, 9.0, 8.0, 7.0]
    assert continued_at == 2


def test_chain_history_without_parent() -> None:
    trials, records = hyperband_trials()

    history, continued_at = chain_history("c", trials, records)

    assert [entry["epoch"] for entry in history] == [1, 2]
    assert continued_at is None


def test_trial_totals_count_parent_rounds() -> None:
    trials, _ = hyperband_trials()

    assert trial_totals("b", trials) == {"epochs": 4.0, "train_seconds": 22.5}
    assert trial_totals("c", trials) == {"epochs": 2.0, "train_seconds": 9.0}


def test_hyperband_rounds_table() -> None:
    trials, _ = hyperband_trials()

    rounds = report._hyperband_rounds(trials)

    assert rounds == [
        {"bracket": 1, "round": 0, "trials": 2, "completed": 2, "epochs_to": 2, "epochs_trained": 4,
         "best_val_mae": 9.0},
        {"bracket": 1, "round": 1, "trials": 1, "completed": 1, "epochs_to": 4, "epochs_trained": 2,
         "best_val_mae": 7.0},
    ]


def test_baseline_trials_match_searched_values() -> None:
    trials = pd.DataFrame({
        "trial_id": ["0", "1", "2", "3"],
        "training.learning_rate": [1e-4, 1e-3, 1e-4, 1e-4],
        "head.dense_layers": [0, 0, 1, 0],
        # Units do nothing without a dense layer, so trial 3 still uses the baseline's head.
        "head.units": [256, 256, 256, 64],
    })
    baseline = {"training.learning_rate": 1e-4, "head.dense_layers": 0, "head.units": 256}

    matching = baseline_trials(trials, baseline)

    assert matching["trial_id"].tolist() == ["0", "3"]


def test_compared_settings_list_differences() -> None:
    best = {"hyperparameters": {"training.learning_rate": 0.001}}
    best_space = {"search": {"tuner": "random"}, "data": {"image_size": 32, "cache": "memory"},
                  "training": {"learning_rate": {"type": "choice", "values": [0.001, 0.0003]}, "epochs": 4}}
    baseline = {"hyperparameters": {}}
    baseline_space = {"search": {"tuner": "hyperband"}, "data": {"image_size": 224, "cache": "disk"},
                      "training": {"learning_rate": 0.0001, "epochs": 4}}

    rows = report.compared_settings(best, best_space, baseline, baseline_space)

    assert rows == [("data.image_size", 32, 224), ("training.learning_rate", 0.001, 0.0001)]
    assert report.compared_settings(best, best_space, None, None) == [("training.learning_rate", 0.001, None)]


def test_redact_photos_in_messages() -> None:
    message = "NotFoundError: /data/faces/final_files/000123.jpg; No such file"

    assert redact_photos(message) == "NotFoundError: [photo]; No such file"


def test_text_languages_have_same_keys() -> None:
    assert set(EN) == set(RU)


def test_unknown_language_rejected() -> None:
    with pytest.raises(AgetuneError, match="'de'"):
        texts("de")


# --------------------------------------------------------------------------
# The report of the tiny run


def test_report_data_matches_trials(report_run: Path, english: dict[str, Any]) -> None:
    data = english["data"]
    trials = read_trials(open_run(report_run))
    completed = trials[trials["status"] == "COMPLETED"]
    best = completed.sort_values(["val_mae", "trial_id"]).iloc[0]

    assert data["best"]["trial_id"] == best["trial_id"]
    assert data["best"]["val_mae"] == best["val_mae"]
    assert data["best"]["val_mape"] == best["val_mape"]
    assert data["best"]["completed"] == len(completed)
    assert data["search"]["trials"] == len(trials)
    assert data["search"]["completed"] == len(completed)
    assert data["search"]["failed"] == int(trials["status"].isin(["FAILED", "INVALID"]).sum())
    assert data["search"]["tuner"] == "random"
    assert data["search"]["budget"] == {"max_trials": 2, "epochs": 1}
    assert data["search"]["train_seconds"] == pytest.approx(trials["train_seconds"].sum())
    assert data["trials"]["trial_id"].tolist() == trials.sort_values("val_mae")["trial_id"].tolist()
    assert data["baseline"] is None


def test_report_data_matches_split(report_run: Path, english: dict[str, Any]) -> None:
    data = english["data"]["data"]
    split = pd.read_csv(report_run / "split.csv")
    validation = split[split["subset"] == "validation"]

    assert data["photos"] == len(split)
    assert data["train"] == int((split["subset"] == "train").sum())
    assert data["validation"] == len(validation)
    assert data["ages"]["all"]["mean"] == pytest.approx(split["age"].mean())
    assert data["ages"]["all"]["median"] == pytest.approx(split["age"].median())
    assert data["ages"]["all"]["min"] == split["age"].min()
    assert data["ages"]["all"]["max"] == split["age"].max()
    assert data["ages"]["validation"]["mean"] == pytest.approx(validation["age"].mean())


def test_report_data_matches_predictions(report_run: Path, english: dict[str, Any]) -> None:
    data = english["data"]
    predictions = pd.read_csv(report_run / "predictions.csv", dtype={"trial_id": str})
    true = predictions["age"].to_numpy()
    predicted = predictions["predicted"].to_numpy()
    split = pd.read_csv(report_run / "split.csv")

    assert predictions.columns.tolist() == ["file_name", "age", "predicted", "trial_id"]
    assert set(predictions["trial_id"]) == {data["best"]["trial_id"]}
    assert sorted(predictions["file_name"]) == sorted(split.loc[split["subset"] == "validation", "file_name"])
    assert data["errors"]["mae"] == pytest.approx(np.mean(np.abs(predicted - true)))
    assert data["errors"]["bias"] == pytest.approx(np.mean(predicted - true))
    # The model was checkpointed at its best epoch, so its predictions reproduce the recorded val MAE.
    assert data["errors"]["mae"] == pytest.approx(data["best"]["val_mae"], abs=0.01)
    minors = true < 18
    assert data["age_check"]["minors"] == int(minors.sum())
    assert data["age_check"]["minors_passed"] == int((minors & (predicted >= 25)).sum())
    assert data["age_check"]["adults_checked"] == int((~minors & (predicted < 25)).sum())
    assert [row["threshold"] for row in data["age_check_curve"]] == list(range(18, 31))
    expected_bands = band_errors(true, predicted)
    assert [band["photos"] for band in data["errors"]["bands"]] == expected_bands["photos"].tolist()


def test_prediction_spread_hand_made() -> None:
    true = [10.0, 20.0, 30.0, 40.0]
    # Standard deviations: 11.18 years for the true ages, 0.71 for estimates that stay near 30.
    flat = prediction_spread(true, [30.0, 30.0, 31.0, 29.0])
    assert flat["true_std"] == pytest.approx(np.sqrt(125.0))
    assert flat["predicted_std"] == pytest.approx(np.sqrt(0.5))
    assert flat["near_constant"] is True

    assert prediction_spread(true, true)["near_constant"] is False
    # Estimates that spread 3 years against 11.18 sit above a quarter of it: not flagged.
    assert prediction_spread(true, [26.0, 28.0, 32.0, 34.0])["near_constant"] is False
    assert prediction_spread([30.0, 30.0], [30.0, 30.0])["near_constant"] is False


def test_near_constant_banner_follows_spread(english: dict[str, Any], russian: dict[str, str]) -> None:
    data = english["data"]
    predictions = pd.read_csv(english["folder"].parent / "run" / "predictions.csv")
    spread = data["errors"]["spread"]
    assert spread["predicted_std"] == pytest.approx(np.std(predictions["predicted"]))
    assert spread["true_std"] == pytest.approx(np.std(predictions["age"]))

    trial = data["errors"]["trial_id"]
    english_banner = f"Trial {trial} estimates nearly the same age for everyone"
    russian_banner = f"Испытание {trial} оценивает почти одинаковый возраст для всех"
    assert (english_banner in english["md"]) is spread["near_constant"]
    assert (english_banner in english["html"]) is spread["near_constant"]
    assert (russian_banner in russian["md"]) is spread["near_constant"]


def test_constant_model_gets_banner(report_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = copy_run(report_run, tmp_path / "run")
    (run_dir / "predictions.csv").unlink()
    monkeypatch.setattr(report, "load_model_for_trial", lambda run, trial_id, complete: ConstantModel(30.0))

    folder = write_report(run_dir, out=tmp_path / "out", lang="en", baseline=None, legal_age=18, threshold=25,
                          gallery=False)

    text = (folder / "report.md").read_text(encoding="utf-8")
    true_std = np.std(pd.read_csv(run_dir / "predictions.csv")["age"])
    assert (f"estimates nearly the same age for everyone: its estimates vary by 0.0 years (standard deviation) "
            f"against {true_std:.1f} years for the true ages") in text


def test_report_numbers_appear_in_files(english: dict[str, Any]) -> None:
    data = english["data"]
    check = data["age_check"]
    numbers = [
        f"{data['best']['val_mae']:.2f}",
        f"{data['best']['val_mape']:.2f}",
        f"{data['errors']['mae']:.2f}",
        f"{data['errors']['bias']:+.2f}",
        f"{data['data']['ages']['all']['mean']:.2f}",
        f"{data['data']['ages']['all']['median']:.2f}",
        f"{check['minors_passed']} of {check['minors']}",
        f"{check['adults_checked']} of {check['adults']}",
        f"{100 * check['adults_checked_share']:.1f}%",
        f"{data['data']['photos']} photos",
    ]
    numbers += [f"{value:.2f}" for value in data["trials"]["val_mae"].dropna()]
    numbers += [f"{band['mae']:.2f}" for band in data["errors"]["bands"] if band["photos"]]
    numbers += [f"{band['bias']:+.2f}" for band in data["errors"]["bands"] if band["photos"]]
    for number in numbers:
        assert number in english["md"], number
        assert number in english["html"], number


def test_summary_states_best_and_age_check(english: dict[str, Any]) -> None:
    data = english["data"]
    summary = english["md"].split("## Data")[0]

    assert f"Best model: trial {data['best']['trial_id']}, val MAE {data['best']['val_mae']:.2f} years" in summary
    assert "no baseline to compare with" in summary
    assert "At threshold 25," in summary
    assert "no baseline run given" in english["md"].lower()
    assert "agetune search --space baseline" in english["md"]


def test_report_folder_contents(english: dict[str, Any]) -> None:
    folder = english["folder"]
    data = english["data"]

    assert {path.name for path in folder.glob("*.png")} == FIGURES
    trials = pd.read_csv(folder / "trials.csv", dtype={"trial_id": str})
    assert trials["trial_id"].tolist() == data["trials"]["trial_id"].tolist()
    assert trials["val_mae"].is_monotonic_increasing
    for name in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", english["md"]):
        assert (folder / name).is_file(), name


def test_html_is_self_contained(english: dict[str, Any]) -> None:
    html = english["html"]
    images = re.findall(r"<img\b[^>]*>", html)

    assert len(images) == len(FIGURES)
    for image in images:
        assert 'src="data:image/png;base64,' in image
        assert re.search(r'data-file="([^"]+)"', image).group(1) in FIGURES
    assert "<script" not in html
    assert "<link" not in html
    assert "http://" not in html
    assert "https://" not in html


def test_default_report_names_no_photo(report_run: Path, english: dict[str, Any]) -> None:
    split = pd.read_csv(report_run / "split.csv")

    for name in split["file_name"]:
        assert name not in english["md"], name
        assert name not in english["html"], name
    assert "final_files" not in english["md"] + english["html"]
    assert not list(english["folder"].glob("*.jpg"))


def test_russian_report_has_no_english_headings(english: dict[str, Any], russian: dict[str, str]) -> None:
    for heading in headings("en"):
        assert heading not in russian["md"], heading
        assert heading not in russian["html"], heading
    for key in (key for key in EN if key.endswith("_heading") and f"## {EN[key]}" in english["md"]):
        assert f"## {RU[key]}" in russian["md"], key
    assert '<html lang="ru">' in russian["html"]
    assert "Лучшая модель: испытание" in russian["md"]


def test_russian_report_translates_tables(russian: dict[str, str]) -> None:
    for english_label in ("Validation MAE (years)", "Minors without ID check", "Age band", "Trials run",
                          "Mean age", "Best model"):
        assert english_label not in russian["md"], english_label
        assert english_label not in russian["html"], english_label
    assert "`training.learning_rate`" in russian["md"]


def test_predictions_reused_from_cache(report_run: Path, english: dict[str, Any], tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    before = (report_run / "predictions.csv").stat().st_mtime_ns

    def no_model(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the model was loaded although predictions.csv is current")

    monkeypatch.setattr(report, "load_model_for_trial", no_model)
    write_report(report_run, out=tmp_path / "again", lang="en", baseline=None, legal_age=18, threshold=25,
                 gallery=False)

    assert (report_run / "predictions.csv").stat().st_mtime_ns == before
    assert build_report_data(report_run)["errors"]["source"] == "cached"


def test_predictions_recomputed_for_new_best(report_run: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = copy_run(report_run, tmp_path / "run")
    cache = pd.read_csv(run_dir / "predictions.csv", dtype={"trial_id": str})
    cache["trial_id"] = "another"
    cache.to_csv(run_dir / "predictions.csv", index=False)
    loaded = []

    def constant_model(run: Any, trial_id: str, complete: bool) -> ConstantModel:
        loaded.append(trial_id)
        return ConstantModel(30.0)

    monkeypatch.setattr(report, "load_model_for_trial", constant_model)
    data = build_report_data(run_dir)

    assert loaded == [data["best"]["trial_id"]]
    assert data["errors"]["source"] == "recomputed"
    fresh = pd.read_csv(run_dir / "predictions.csv", dtype={"trial_id": str})
    assert set(fresh["trial_id"]) == {data["best"]["trial_id"]}
    assert fresh["predicted"].tolist() == [30.0] * len(fresh)
    minors = int((fresh["age"] < 18).sum())
    assert data["age_check"]["minors_passed"] == minors


def test_partial_run_labeled(report_run: Path, tmp_path: Path) -> None:
    run_dir = copy_run(report_run, tmp_path / "run")
    state = json.loads((run_dir / "state.json").read_text(encoding="utf-8"))
    state["status"] = "running"
    write_json(run_dir / "state.json", state)

    folder = write_report(run_dir, out=tmp_path / "out", lang="en", baseline=None, legal_age=18, threshold=25,
                          gallery=False)

    trials = len(read_trials(open_run(run_dir)))
    assert f"Partial: the search is still running ({trials} trials so far)" in (folder / "report.md").read_text()
    assert "still running" in (folder / "report.html").read_text()


def test_no_completed_trial_fails(report_run: Path, tmp_path: Path) -> None:
    run_dir = copy_run(report_run, tmp_path / "run")
    # As at the start of a search: the trials are running and none has left its record yet.
    for path in (run_dir / "tuner").glob("trial_*/trial.json"):
        state = json.loads(path.read_text(encoding="utf-8"))
        state["status"] = "RUNNING"
        write_json(path, state)
    for path in (run_dir / "trials").glob("*.json"):
        path.unlink()

    result = CliRunner().invoke(app, ["report", str(run_dir), "--out", str(tmp_path / "out")])

    assert result.exit_code == 1
    assert "has completed yet" in result.stderr
    assert not (tmp_path / "out").exists()


def test_not_a_run_folder_exit_code(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["report", str(tmp_path), "--out", str(tmp_path / "out")])

    assert result.exit_code == 1
    assert "is not an agetune run folder" in result.stderr
    with pytest.raises(RunFolderError):
        build_report_data(tmp_path)


def test_out_folder_not_run_folder(report_run: Path) -> None:
    with pytest.raises(AgetuneError, match="is the run folder itself"):
        write_report(report_run, out=report_run, lang="en", baseline=None, legal_age=18, threshold=25,
                     gallery=False)


def test_other_files_in_out_folder_kept(report_run: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_bytes(b"not a figure of the report")

    write_report(report_run, out=tmp_path, lang="en", baseline=None, legal_age=18, threshold=25, gallery=False)

    assert (tmp_path / "notes.png").read_bytes() == b"not a figure of the report"


def test_invalid_threshold_rejected(report_run: Path) -> None:
    with pytest.raises(AgetuneError, match="--threshold"):
        build_report_data(report_run, threshold=0)


def test_baseline_run_compared(report_run: Path, tmp_path: Path) -> None:
    baseline_dir = copy_run(report_run, tmp_path / "baseline")
    # Make every epoch of the baseline run 1.5 years worse than this run's.
    for path in (baseline_dir / "trials").glob("*.json"):
        record = json.loads(path.read_text(encoding="utf-8"))
        for entry in record["history"]:
            entry["val_mae"] += 1.5
        write_json(path, record)

    folder = write_report(report_run, out=tmp_path / "out", lang="en", baseline=baseline_dir, legal_age=18,
                          threshold=25, gallery=False)
    data = build_report_data(report_run, baseline=baseline_dir)

    assert data["baseline"]["source"] == "run"
    assert data["baseline"]["val_mae"] == pytest.approx(data["best"]["val_mae"] + 1.5)
    assert data["comparison"]["val_mae"] == pytest.approx(-1.5)
    assert data["baseline"]["overlap"] is None
    markdown = (folder / "report.md").read_text(encoding="utf-8")
    assert "1.50 years better than the baseline" in markdown
    assert f"{data['baseline']['val_mae']:.2f}" in markdown
    assert "-1.50" in markdown


def test_baseline_trial_in_same_run(report_run: Path, tmp_path: Path) -> None:
    run_dir = copy_run(report_run, tmp_path / "run")
    data = build_report_data(run_dir)
    other = next(tid for tid in data["trials"]["trial_id"] if tid != data["best"]["trial_id"])
    path = run_dir / "tuner" / f"trial_{other}" / "trial.json"
    state = json.loads(path.read_text(encoding="utf-8"))
    state["hyperparameters"]["values"]["training.learning_rate"] = 1e-4  # the baseline space's value
    write_json(path, state)

    data = build_report_data(run_dir)

    assert data["baseline"]["source"] == "trial"
    assert data["baseline"]["trial_id"] == other
    assert data["comparison"]["val_mae"] < 0


def test_baseline_space_run_is_its_own_baseline(report_run: Path, tmp_path: Path) -> None:
    run_dir = copy_run(report_run, tmp_path / "run")
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    config["space_name"] = "baseline"
    write_json(run_dir / "config.json", config)

    folder = write_report(run_dir, out=tmp_path / "out", lang="en", baseline=None, legal_age=18, threshold=25,
                          gallery=False)

    data = build_report_data(run_dir)
    assert data["baseline"]["trial_id"] == data["best"]["trial_id"]
    assert data["baseline"]["is_best"]
    assert "which is the baseline configuration itself" in (folder / "report.md").read_text(encoding="utf-8")


def test_baseline_without_completed_trial_fails(report_run: Path, tmp_path: Path) -> None:
    baseline_dir = copy_run(report_run, tmp_path / "baseline")
    for path in (baseline_dir / "tuner").glob("trial_*/trial.json"):
        state = json.loads(path.read_text(encoding="utf-8"))
        state["status"] = "FAILED"
        write_json(path, state)

    with pytest.raises(AgetuneError, match="baseline run .* has no completed trial"):
        build_report_data(report_run, baseline=baseline_dir)


def test_hyperband_run_shows_brackets(report_run: Path, tmp_path: Path) -> None:
    run_dir = copy_run(report_run, tmp_path / "run")
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    config["space"]["search"].update({"tuner": "hyperband", "max_epochs": 2, "factor": 2})
    write_json(run_dir / "config.json", config)
    # Dress the two trials up as Hyperband's: both in bracket 1, round 0, each trained to epoch 1.
    for path in (run_dir / "tuner").glob("trial_*/trial.json"):
        state = json.loads(path.read_text(encoding="utf-8"))
        state["hyperparameters"]["values"].update({"tuner/bracket": 1, "tuner/round": 0, "tuner/epochs": 1,
                                                   "tuner/initial_epoch": 0})
        write_json(path, state)

    folder = write_report(run_dir, out=tmp_path / "out", lang="en", baseline=None, legal_age=18, threshold=25,
                          gallery=False)

    markdown = (folder / "report.md").read_text(encoding="utf-8")
    best_mae = build_report_data(run_dir)["best"]["val_mae"]
    assert "## Hyperband brackets" in markdown
    assert "max_epochs 2, factor 2" in markdown
    assert f"| 1 | 0 | 2 | 2 | 1 | 2 | {best_mae:.2f} |" in markdown
    assert "| Trial | Status | Bracket | Round |" in markdown


def test_gallery_photos_removed_without_flag(report_run: Path, tmp_path: Path) -> None:
    folder = write_report(report_run, out=tmp_path / "out", lang="en", baseline=None, legal_age=18, threshold=25,
                          gallery=True)
    html = (folder / "report.html").read_text(encoding="utf-8")
    predictions = pd.read_csv(report_run / "predictions.csv")
    worst = predictions.assign(error=(predictions["predicted"] - predictions["age"]).abs()).sort_values("error")
    worst = worst.iloc[-1]

    assert "data:image/jpeg;base64," in html
    assert worst["file_name"] in html
    assert "licence" in html
    assert len(list(folder.glob("gallery-*.jpg"))) == min(report.GALLERY_SIZE, len(predictions))

    write_report(report_run, out=folder, lang="en", baseline=None, legal_age=18, threshold=25, gallery=False)

    assert not list(folder.glob("gallery-*.jpg"))
    assert worst["file_name"] not in (folder / "report.html").read_text(encoding="utf-8")


# --------------------------------------------------------------------------
# The HTML in a browser


@pytest.mark.slow
def test_screenshot_in_chromium(english: dict[str, Any], tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import screenshot_report
    finally:
        sys.path.pop(0)
    if screenshot_report.find_chromium() is None:
        pytest.skip("Chromium is not installed; on Debian run `apt-get install chromium` to render the report")
    png = tmp_path / "report.png"

    result = subprocess.run([sys.executable, str(REPO / "scripts" / "screenshot_report.py"),
                             str(english["folder"] / "report.html"), str(png)],
                            capture_output=True, text=True, timeout=180, check=False)

    assert result.returncode == 0, result.stderr
    from PIL import Image

    with Image.open(png) as image:
        pixels = np.asarray(image.convert("L"), dtype=np.float64)
    assert pixels.shape == (2400, 1280)
    assert pixels.std() > 10.0


def test_default_folder_per_language() -> None:
    run = RunFolder(Path("runs") / "faces")
    assert report.default_report_dir(run) == Path("reports") / "faces"
    assert report.default_report_dir(run, "en") == Path("reports") / "faces"
    assert report.default_report_dir(run, "ru") == Path("reports") / "faces" / "ru"
