"""Tests of `agetune export-best` and `agetune predict` on the tiny finished search."""

from __future__ import annotations

import csv
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from tuner.cli import app
from tuner.data import load_split, make_dataset
from tuner.errors import AgetuneError, RunFolderError
from tuner.export import (export_best, mae_by_age_band, mean_absolute_percentage_error, plan_export,
                          retrain_epochs, write_tflite)
from tuner.predict import collect_photos, estimate_ages, load_predictor
from tuner.run import open_run, read_trials, select_best_trial

# Largest difference allowed between the float16 TFLite model and the Keras model, in years. Measured on
# tiny_run's 12 validation photos (2 CPU cores, TF 2.21) in two builds: 0.0024 and 0.0023 years on estimates
# of 1 to 9 years. float16 weights keep about 3 significant digits, so even at ages near 100 the difference
# should stay well under 0.5 years.
TFLITE_FLOAT16_TOLERANCE = 0.5
# Bounds for int8 weights and activations, in years. tiny_run's barely trained model calibrates poorly and its
# training is not deterministic. Three builds measured a max difference of 0.035, 0.11 and 2.5 years and a mean
# of 0.019, 0.046 and 0.25 years, on estimates of 1 to 9 years. A broken calibration would miss by about the
# whole estimate. These bounds hold for tiny_run only: real ages are larger.
TFLITE_INT8_MAX_DIFFERENCE = 5.0
TFLITE_INT8_MEAN_DIFFERENCE = 1.0
# The .keras file and the SavedModel run the same float32 graph as the checkpoint.
SAME_GRAPH_TOLERANCE = 1e-4

CARD_KEYS = {"model", "created_at", "input", "output", "files", "training", "hyperparameters", "searched", "data",
             "validation", "export_checks", "search", "software", "limits"}


@dataclass
class Reference:
    """The best trial's own estimates on the validation photos, from the run folder, not from the export."""

    trial_id: str
    val_mae: float
    images: np.ndarray
    ages: np.ndarray
    estimates: np.ndarray


@pytest.fixture(scope="module")
def exported(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One float16 export of tiny_run, shared by the module because conversion takes about a minute."""
    return export_best(tiny_run, out=tmp_path_factory.mktemp("exported") / "export", tflite="float16",
                       threshold=25)


@pytest.fixture(scope="module")
def reference(tiny_run: Path) -> Reference:
    from tuner.search import load_trial_model

    run = open_run(tiny_run)
    best = select_best_trial(read_trials(run))
    model = load_trial_model(run, str(best["trial_id"]))
    split = load_split(run.split_path)
    validation = split[split["subset"] == "validation"].reset_index(drop=True)
    images, ages = [], []
    for batch_images, batch_ages in make_dataset(validation, 32, 64, training=False, cache=None):
        images.append(batch_images.numpy())
        ages.append(batch_ages.numpy())
    pixels = np.concatenate(images)
    estimates = np.asarray(model.predict_on_batch(pixels), dtype=np.float64).reshape(-1)
    return Reference(str(best["trial_id"]), float(best["val_mae"]), pixels,
                     np.concatenate(ages).astype(np.float64), estimates)


@pytest.fixture(scope="module")
def card(exported: Path) -> dict:
    return json.loads((exported / "model_card.json").read_text(encoding="utf-8"))


def copy_run(run_dir: Path, destination: Path, with_checkpoints: bool) -> Path:
    """Copy a run folder; without checkpoints (280 MB each) the copy takes no time."""
    ignore = None if with_checkpoints else shutil.ignore_patterns("*.h5", "*.keras")
    return Path(shutil.copytree(run_dir, destination, ignore=ignore))


def invoke(*arguments: str):
    return CliRunner().invoke(app, [str(argument) for argument in arguments])


# --------------------------------------------------------------------------
# Figures


def test_mae_by_age_band_edges() -> None:
    ages = np.array([12.0, 13.0, 17.0, 65.0, 90.0])
    estimates = np.array([14.0, 13.0, 20.0, 60.0, 80.0])
    bands = {band["band"]: band for band in mae_by_age_band(ages, estimates)}
    assert list(bands) == ["0-12", "13-17", "18-24", "25-34", "35-44", "45-54", "55-64", "65+"]
    assert bands["0-12"] == {"band": "0-12", "photos": 1, "mae": 2.0, "bias": 2.0}
    assert bands["13-17"] == {"band": "13-17", "photos": 2, "mae": 1.5, "bias": 1.5}
    assert bands["18-24"] == {"band": "18-24", "photos": 0, "mae": None, "bias": None}
    assert bands["65+"] == {"band": "65+", "photos": 2, "mae": 7.5, "bias": -7.5}


def test_mape_matches_keras_definition() -> None:
    assert mean_absolute_percentage_error(np.array([10.0, 50.0]), np.array([12.0, 40.0])) == pytest.approx(20.0)


def test_retrain_epochs_is_best_epoch() -> None:
    # A Hyperband round trained epochs 3 to 7 from its parent's checkpoint; Keras numbered them 3..7.
    assert retrain_epochs(pd.Series({"initial_epoch": 2, "best_epoch": 5})) == 5


# --------------------------------------------------------------------------
# The exported files


def test_export_writes_every_file(exported: Path) -> None:
    for name in ("model.keras", "saved_model/saved_model.pb", "model.tflite", "model_card.md", "model_card.json"):
        assert (exported / name).is_file(), name
    leftovers = [path.name for path in exported.parent.iterdir() if path.name.startswith(".")]
    assert leftovers == []


def test_keras_file_matches_trial_model(exported: Path, reference: Reference) -> None:
    predictor = load_predictor(exported / "model.keras")
    assert predictor.image_size == (32, 32)
    difference = np.abs(predictor.predict(reference.images) - reference.estimates)
    assert difference.max() <= SAME_GRAPH_TOLERANCE


def test_saved_model_signature_matches_trial_model(exported: Path, reference: Reference) -> None:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(exported / "saved_model"))
    signature = loaded.signatures["serving_default"]
    spec = signature.structured_input_signature[1]["image"]
    assert spec.dtype == tf.uint8
    assert spec.shape.as_list() == [None, 32, 32, 3]
    ages = signature(image=tf.constant(reference.images))["output_0"].numpy().reshape(-1)
    assert np.abs(ages - reference.estimates).max() <= SAME_GRAPH_TOLERANCE


def test_saved_model_has_no_random_ops(exported: Path) -> None:
    # Augmentation traced in training mode would leave random ops in the serving graph.
    import tensorflow as tf

    signature = tf.saved_model.load(str(exported / "saved_model")).signatures["serving_default"]
    graph = signature.graph.as_graph_def()
    ops = {node.op for node in graph.node}
    for function in graph.library.function:
        ops |= {node.op for node in function.node_def}
    assert "Conv2D" in ops
    assert sorted(op for op in ops if "Random" in op) == []


def test_tflite_close_to_trial_model(exported: Path, reference: Reference) -> None:
    predictor = load_predictor(exported / "model.tflite")
    assert predictor.image_size == (32, 32)
    difference = np.abs(predictor.predict(reference.images) - reference.estimates)
    print(f"TFLite float16 vs Keras: max {difference.max():.4g} years, mean {difference.mean():.4g}")
    assert difference.max() <= TFLITE_FLOAT16_TOLERANCE


def test_recomputed_mae_matches_recorded(card: dict, reference: Reference) -> None:
    assert card["validation"]["mae"] == pytest.approx(reference.val_mae, abs=1e-3)
    assert card["search"]["val_mae"] == pytest.approx(reference.val_mae, abs=1e-9)
    assert card["search"]["best_trial"] == reference.trial_id


def test_model_card_keys(card: dict) -> None:
    assert set(card) == CARD_KEYS
    assert card["input"]["shape"] == [32, 32, 3]
    assert card["input"]["dtype"] == "uint8"
    assert card["files"]["tflite"]["status"] == "written"
    assert card["files"]["tflite"]["quantization"] == "float16"
    assert card["training"]["retrained"] is False
    assert card["training"]["epochs"] == 1
    assert card["searched"] == ["training.learning_rate"]
    assert card["hyperparameters"]["backbone.weights"] == "none"
    assert card["model"]["initialisation"] == "random"
    assert card["software"]["tensorflow"]


def test_model_card_data_summary(card: dict, tiny_run: Path) -> None:
    split = load_split(tiny_run / "split.csv")
    train = split[split["subset"] == "train"]
    data = card["data"]
    assert data["photos"] == 48
    assert data["train"] == len(train)
    assert data["validation"] == 48 - len(train)
    assert data["age_min"] == float(split["age"].min())
    assert data["age_max"] == float(split["age"].max())
    assert data["train_age_max"] == float(train["age"].max())
    # tiny_run's photos come from the synthetic generator, which marks its folder.
    assert data["synthetic"] is True


def test_model_card_figures_equal_recomputed(card: dict, reference: Reference) -> None:
    validation = card["validation"]
    ages, estimates = reference.ages, reference.estimates
    errors = np.abs(ages - estimates)
    assert validation["held_out"] is True
    assert validation["photos"] == len(ages)
    assert validation["mae"] == pytest.approx(errors.mean(), abs=1e-4)
    assert validation["mape"] == pytest.approx(100.0 * np.mean(errors / ages), abs=1e-3)
    edges = [("0-12", 0, 13), ("13-17", 13, 18), ("18-24", 18, 25), ("25-34", 25, 35), ("35-44", 35, 45),
             ("45-54", 45, 55), ("55-64", 55, 65), ("65+", 65, 200)]
    for band, (label, low, high) in zip(validation["mae_by_age_band"], edges, strict=True):
        inside = (ages >= low) & (ages < high)
        assert band["band"] == label
        assert band["photos"] == int(inside.sum())
        if inside.any():
            assert band["mae"] == pytest.approx(errors[inside].mean(), abs=1e-4)
            assert band["bias"] == pytest.approx((estimates - ages)[inside].mean(), abs=1e-4)
        else:
            assert band["mae"] is None
    check = validation["age_check"]
    assert check["legal_age"] == 18
    assert check["threshold"] == 25
    assert check["minors"] == int((ages < 18).sum())
    assert check["minors_passed"] == int(((ages < 18) & (estimates >= 25)).sum())
    assert check["adults_checked"] == int(((ages >= 18) & (estimates < 25)).sum())


def test_model_card_agreement_recorded(card: dict) -> None:
    agreement = card["export_checks"]["agreement_with_keras"]
    assert agreement["saved_model"]["photos"] == 12
    assert agreement["saved_model"]["max_abs_diff"] <= SAME_GRAPH_TOLERANCE
    assert agreement["tflite"]["max_abs_diff"] <= TFLITE_FLOAT16_TOLERANCE


def test_model_card_markdown_states_limits(exported: Path, card: dict) -> None:
    text = (exported / "model_card.md").read_text(encoding="utf-8")
    assert "WARNING: TRAINED ON SYNTHETIC DATA" in text
    assert "## Limits" in text
    assert f"MAE: {card['validation']['mae']:.2f} years" in text
    assert "| 0-12 | " in text
    assert "uint8 RGB images of 32x32x3 pixels" in text
    assert any("TRAINED ON SYNTHETIC DATA" in limit for limit in card["limits"])


# --------------------------------------------------------------------------
# Export errors


def test_existing_out_needs_force(exported: Path, tiny_run: Path) -> None:
    before = sorted(path.name for path in exported.iterdir())
    result = invoke("export-best", tiny_run, "--out", exported)
    assert result.exit_code == 1
    assert "--force" in result.stderr
    assert sorted(path.name for path in exported.iterdir()) == before


def test_out_inside_run_rejected(tiny_run: Path) -> None:
    result = invoke("export-best", tiny_run, "--out", tiny_run, "--force")
    assert result.exit_code == 1
    assert "part of the run folder" in result.stderr
    assert (tiny_run / "config.json").is_file()


def test_force_refuses_foreign_folder(tiny_run: Path, tmp_path: Path) -> None:
    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "letter.txt").write_text("keep me", encoding="utf-8")
    result = invoke("export-best", tiny_run, "--out", folder, "--force")
    assert result.exit_code == 1
    assert "not an agetune export" in result.stderr
    assert "--force does not replace it" in result.stderr
    assert (folder / "letter.txt").read_text(encoding="utf-8") == "keep me"


def test_invalid_tflite_mode(tiny_run: Path, tmp_path: Path) -> None:
    result = invoke("export-best", tiny_run, "--out", tmp_path / "out", "--tflite", "int4")
    assert result.exit_code == 1
    assert "--tflite must be one of float16, int8, none" in result.stderr


def test_run_without_completed_trial(tiny_run: Path, tmp_path: Path) -> None:
    run_dir = copy_run(tiny_run, tmp_path / "run", with_checkpoints=False)
    for path in (run_dir / "tuner").glob("trial_*/trial.json"):
        state = json.loads(path.read_text(encoding="utf-8"))
        state["status"] = "FAILED"
        path.write_text(json.dumps(state), encoding="utf-8")
    with pytest.raises(RunFolderError, match="has no completed trial"):
        export_best(run_dir, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_checkpoint(tiny_run: Path, tmp_path: Path) -> None:
    run_dir = copy_run(tiny_run, tmp_path / "run", with_checkpoints=False)
    result = invoke("export-best", run_dir, "--out", tmp_path / "out")
    assert result.exit_code == 1
    assert "has no checkpoint" in result.stderr
    assert "checkpoint.weights.h5 is missing" in result.stderr
    assert not (tmp_path / "out").exists()


def test_tflite_converter_error_is_reported(tiny_run: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import tensorflow as tf
    from tensorflow.lite.python.convert_phase import ConverterError

    class FailingConverter:
        optimizations: list = []
        target_spec = tf.lite.TargetSpec()

        def convert(self) -> bytes:
            raise ConverterError("op 'Foo' is neither a custom op nor a flex op")

    monkeypatch.setattr(tf.lite.TFLiteConverter, "from_saved_model", lambda path: FailingConverter())
    plan = plan_export(tiny_run, tmp_path / "out", force=False, retrain=False, tflite="float16", threshold=25)
    state = write_tflite(plan, tmp_path / "saved_model", tmp_path / "model.tflite")
    assert state == {"status": "failed", "quantization": "float16",
                     "message": "op 'Foo' is neither a custom op nor a flex op"}
    assert not (tmp_path / "model.tflite").exists()


def test_failed_tflite_keeps_other_files(tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def write_without_tflite(plan, folder: Path) -> dict:
        (folder / "model.keras").write_text("stand-in", encoding="utf-8")
        return {"files": {"tflite": {"status": "failed", "message": "converter crashed"}},
                "software": {"tensorflow": "2.21.0"}}

    monkeypatch.setattr("tuner.export.write_export", write_without_tflite)
    out = tmp_path / "out"
    with pytest.raises(AgetuneError, match="TFLite conversion failed") as raised:
        export_best(tiny_run, out=out)
    assert "converter of TensorFlow 2.21.0: converter crashed" in str(raised.value)
    assert f"model.keras, saved_model/ and the model card are complete in {out}" in str(raised.value)
    assert (out / "model.keras").read_text(encoding="utf-8") == "stand-in"


def test_force_replaces_export_without_tflite(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    out.mkdir()
    (out / "model_card.json").write_text("{}", encoding="utf-8")
    (out / "stale.txt").write_text("from an earlier export", encoding="utf-8")
    result = invoke("export-best", tiny_run, "--out", out, "--force", "--tflite", "none")
    assert result.exit_code == 0, result.output
    assert f"exported to {out}" in result.stdout
    assert sorted(path.name for path in out.iterdir()) == ["model.keras", "model_card.json", "model_card.md",
                                                          "saved_model"]
    card = json.loads((out / "model_card.json").read_text(encoding="utf-8"))
    assert card["files"]["tflite"]["status"] == "skipped"
    assert card["files"]["tflite"]["path"] is None
    assert "tflite" not in card["export_checks"]["agreement_with_keras"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["export"]


# --------------------------------------------------------------------------
# Predict


@pytest.fixture
def photo_folder(tmp_path: Path, write_photo) -> Path:
    """Two readable photos of other sizes than the model's, a corrupt one and a text file to skip."""
    folder = tmp_path / "photos"
    folder.mkdir()
    write_photo(folder / "a.jpg", size=48)
    write_photo(folder / "c.PNG", size=20, format="PNG")
    (folder / "b.jpg").write_bytes(b"not an image")
    (folder / "notes.txt").write_text("not a photo", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def estimate_with_pipeline(exported: Path):
    """Return a function that estimates photos through the training pipeline, independently of tuner.predict."""
    import keras

    model = keras.saving.load_model(exported / "model.keras", compile=False)

    def estimate(folder: Path, names: list[str]) -> list[float]:
        frame = pd.DataFrame({"path": [str(folder / name) for name in names], "age": [0.0] * len(names)})
        batches = make_dataset(frame, 32, 8, training=False, cache=None)
        images = np.concatenate([batch.numpy() for batch, _ in batches])
        return [float(age) for age in model.predict_on_batch(images).reshape(-1)]

    return estimate


def test_collect_photos_filters_and_sorts(photo_folder: Path) -> None:
    extra = photo_folder.parent / "extra.gif"
    extra.write_bytes(b"GIF89a")
    photos = collect_photos([photo_folder, extra])
    assert [path.name for path in photos] == ["a.jpg", "b.jpg", "c.PNG", "extra.gif"]


def test_predict_csv_lists_corrupt_photo(exported: Path, photo_folder: Path, tmp_path: Path,
                                         estimate_with_pipeline) -> None:
    out = tmp_path / "estimates.csv"
    result = invoke("predict", exported / "model.keras", photo_folder, "--out", out, "--threshold", "25")
    assert result.exit_code == 0, result.output
    bad = photo_folder / "b.jpg"
    reason = "not a decodable image: Unknown image file format. One of JPEG, JPEG XL, PNG, GIF, BMP, WebP required."
    assert f"skipped {bad}: {reason}" in result.stderr
    a_age, c_age = estimate_with_pipeline(photo_folder, ["a.jpg", "c.PNG"])
    rows = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert rows == [
        ["file", "age", "id_check", "error"],
        [str(photo_folder / "a.jpg"), f"{a_age:.1f}", "yes" if a_age < 25 else "no", ""],
        [str(bad), "", "", reason],
        [str(photo_folder / "c.PNG"), f"{c_age:.1f}", "yes" if c_age < 25 else "no", ""],
    ]


def test_predict_table_on_screen(exported: Path, photo_folder: Path, estimate_with_pipeline) -> None:
    result = invoke("predict", exported / "model.keras", photo_folder / "a.jpg", photo_folder / "b.jpg",
                    "--threshold", "0")
    assert result.exit_code == 0, result.output
    (a_age,) = estimate_with_pipeline(photo_folder, ["a.jpg"])
    lines = result.stdout.strip().splitlines()
    width = len(str(photo_folder / "a.jpg"))
    assert lines == [f"{'file':<{width}}    age  id_check", f"{photo_folder / 'a.jpg'}  {a_age:>5.1f}  no"]
    assert "skipped" in result.stderr
    assert "b.jpg" not in result.stdout


def test_predict_no_readable_photo_exits_1(exported: Path, photo_folder: Path) -> None:
    result = invoke("predict", exported / "model.keras", photo_folder / "b.jpg", photo_folder / "missing.jpg")
    assert result.exit_code == 1
    assert f"skipped {photo_folder / 'missing.jpg'}: file not found" in result.stderr
    assert "none of the 2 photos could be read" in result.stderr


def test_predict_empty_folder_exits_1(exported: Path, tmp_path: Path) -> None:
    result = invoke("predict", exported / "model.keras", tmp_path)
    assert result.exit_code == 1
    assert "no photos to estimate" in result.stderr


def test_predict_rejects_unknown_model(tmp_path: Path, photo_folder: Path) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(b"\0")
    result = invoke("predict", model, photo_folder)
    assert result.exit_code == 1
    assert "unknown format" in result.stderr
    result = invoke("predict", tmp_path / "absent.keras", photo_folder)
    assert result.exit_code == 1
    assert "not found" in result.stderr


def test_predict_rejects_corrupt_model(tmp_path: Path, photo_folder: Path) -> None:
    for name in ("model.keras", "model.tflite", "saved_model/saved_model.pb"):
        path = tmp_path / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"not a model")
        model = path.parent if name.startswith("saved_model") else path
        result = invoke("predict", model, photo_folder)
        assert result.exit_code == 1, name
        assert f"cannot load the model {model}: " in result.stderr
        assert "Export it again with `agetune export-best`." in result.stderr


def test_predict_formats_agree(exported: Path, photo_folder: Path) -> None:
    photos = collect_photos([photo_folder])
    results = {}
    for name in ("model.keras", "saved_model", "model.tflite"):
        predictor = load_predictor(exported / name)
        assert predictor.image_size == (32, 32)
        results[name] = estimate_ages(predictor, photos, batch_size=2)
    for estimates in results.values():
        assert [estimate.error is None for estimate in estimates] == [True, False, True]
    keras_ages = np.array([estimate.age for estimate in results["model.keras"] if estimate.age is not None])
    served = np.array([estimate.age for estimate in results["saved_model"] if estimate.age is not None])
    lite = np.array([estimate.age for estimate in results["model.tflite"] if estimate.age is not None])
    assert np.abs(served - keras_ages).max() <= SAME_GRAPH_TOLERANCE
    assert np.abs(lite - keras_ages).max() <= TFLITE_FLOAT16_TOLERANCE


# --------------------------------------------------------------------------
# Retraining


@pytest.mark.slow
def test_retrain_on_all_photos(tiny_run: Path, tmp_path: Path, reference: Reference) -> None:
    run_dir = copy_run(tiny_run, tmp_path / "run", with_checkpoints=True)
    out = export_best(run_dir, retrain=True, tflite="none")
    assert out == run_dir / "export"
    card = json.loads((out / "model_card.json").read_text(encoding="utf-8"))
    assert card["training"]["retrained"] is True
    assert card["training"]["photos"] == "train + validation"
    assert card["training"]["epochs"] == 1
    validation = card["validation"]
    assert validation["held_out"] is False
    assert validation["mae"] == reference.val_mae
    assert validation["recorded_by_search"] is True
    assert "exported_model_mae_not_held_out" in validation
    # The band figures come from the best trial's checkpoint, which never trained on these photos.
    errors = np.abs(reference.ages - reference.estimates)
    assert validation["mae_by_age_band"][0]["mae"] == pytest.approx(errors[reference.ages < 13].mean(), abs=1e-4)
    retrained = load_predictor(out / "model.keras").predict(reference.images)
    assert np.abs(retrained - reference.estimates).max() > 1e-3
    text = (out / "model_card.md").read_text(encoding="utf-8")
    assert "Retrained from scratch on train + validation for 1 epochs" in text
    assert "not held out" in text


@pytest.mark.slow
def test_int8_export_calibrates(tiny_run: Path, tmp_path: Path, reference: Reference) -> None:
    out = export_best(tiny_run, out=tmp_path / "export", tflite="int8")
    card = json.loads((out / "model_card.json").read_text(encoding="utf-8"))
    assert card["files"]["tflite"] == {"path": "model.tflite", "status": "written", "quantization": "int8",
                                       "message": None}
    predictor = load_predictor(out / "model.tflite")
    difference = np.abs(predictor.predict(reference.images) - reference.estimates)
    print(f"TFLite int8 vs Keras: max {difference.max():.4g} years, mean {difference.mean():.4g}")
    assert difference.max() <= TFLITE_INT8_MAX_DIFFERENCE
    assert difference.mean() <= TFLITE_INT8_MEAN_DIFFERENCE
    assert card["export_checks"]["agreement_with_keras"]["tflite"]["max_abs_diff"] == pytest.approx(
        difference.max(), abs=1e-3)
