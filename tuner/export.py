"""Export the best model of a search: `.keras`, SavedModel, TFLite and a model card.

    <out>/                 <run folder>/export by default
      model.keras          the Keras model: uint8 RGB images in, age in years out
      saved_model/         the same model as a TensorFlow SavedModel for TF Serving
      model.tflite         the same model for TFLite, float16 or int8 quantised (optional)
      model_card.md        what the model is, how well it does, and its limits
      model_card.json      the same facts for programs

Preprocessing is part of the model, so every format takes raw uint8 RGB
images of the input size and nothing else. The export is written to a
temporary folder beside `<out>` and renamed into place at the end, so `<out>`
is either the previous export or the complete new one, never half of each.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tuner.data import load_split
from tuner.errors import AgetuneError, DataError, RunFolderError, first_line
from tuner.model_card import build_model_card, render_model_card
from tuner.predict import Predictor, load_predictor, predict_photos
from tuner.report import age_check, band_errors
from tuner.run import RunFolder, open_run, read_trials, select_best_trial

log = logging.getLogger(__name__)

__all__ = ["export_best", "predict_photos", "mae_by_age_band", "retrain_epochs"]

EXPORT_FOLDER = "export"
TFLITE_MODES = ("float16", "int8", "none")
#: The legal age for buying alcohol that the age-check figures use, in years.
LEGAL_AGE = 18
#: Training photos the int8 converter calibrates activation ranges on.
REPRESENTATIVE_PHOTOS = 100
#: Validation photos on which the SavedModel and TFLite estimates are compared with the Keras model's.
AGREEMENT_PHOTOS = 256
#: Largest difference in years allowed between the SavedModel's and model.keras's ages. Both run the same
#: float32 graph, so anything above rounding noise means the serving signature is wrong.
SAVED_MODEL_TOLERANCE = 1e-3
#: Floor of the MAPE denominator, as in keras.metrics.MeanAbsolutePercentageError, so an age of 0 stays finite.
MAPE_EPSILON = 1e-7


# --------------------------------------------------------------------------
# Figures


def mean_absolute_percentage_error(ages: np.ndarray, estimates: np.ndarray) -> float:
    """Return the MAPE in percent, computed as Keras does, so it matches the val_mape of the search."""
    return float(100.0 * np.mean(np.abs(ages - estimates) / np.maximum(np.abs(ages), MAPE_EPSILON)))


def mae_by_age_band(ages: np.ndarray, estimates: np.ndarray) -> list[dict[str, Any]]:
    """Return `tuner.report.band_errors` as JSON-ready rows: band, photos, MAE and bias in years.

    Bias is the mean of estimate minus true age. MAE and bias are None for a band without photos.
    """
    rows = []
    for row in band_errors(ages, estimates).itertuples(index=False):
        rows.append({"band": row.band, "photos": int(row.photos), "mae": _finite_or_none(row.mae),
                     "bias": _finite_or_none(row.bias)})
    return rows


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def evaluate(ages: np.ndarray, estimates: np.ndarray, threshold: float) -> dict[str, Any]:
    """Return MAE and MAPE (years, percent), the MAE by age band and the age-check figures."""
    return {
        "photos": int(ages.size),
        "mae": float(np.mean(np.abs(ages - estimates))),
        "mape": mean_absolute_percentage_error(ages, estimates),
        "mae_by_age_band": mae_by_age_band(ages, estimates),
        "age_check": age_check(ages, estimates, LEGAL_AGE, threshold),
    }


# --------------------------------------------------------------------------
# The export


@dataclass
class ExportPlan:
    """Everything `export_best` decided before writing: the run, the best trial and the options."""

    run: RunFolder
    best: pd.Series
    target: Path
    retrain: bool
    tflite: str
    threshold: int
    split: pd.DataFrame
    config: dict[str, Any]

    @property
    def trial_id(self) -> str:
        return str(self.best["trial_id"])

    @property
    def image_size(self) -> int:
        return int(self.config["space"]["data"]["image_size"])

    @property
    def batch_size(self) -> int:
        return int(self.config["space"]["data"]["batch_size"])

    @property
    def seed(self) -> int:
        return int(self.config["space"]["search"]["seed"])

    def subset(self, name: str) -> pd.DataFrame:
        return self.split[self.split["subset"] == name].reset_index(drop=True)


def export_best(run_dir: Path, out: Path | None = None, force: bool = False, retrain: bool = False,
                tflite: str = "float16", threshold: int = 25) -> Path:
    """Export the best trial of a search to `out` (default `<run folder>/export`) and return that folder.

    With `retrain`, the best hyperparameters are trained again on train +
    validation for the best trial's epoch count before the export. `tflite`
    is "float16", "int8" or "none". Raises RunFolderError when the run has no
    completed trial or its checkpoint is missing, and AgetuneError when `out`
    exists without `force`. A failed TFLite conversion raises AgetuneError
    after the other files are in place.
    """
    plan = plan_export(run_dir, out, force, retrain, tflite, threshold)
    staging = plan.target.parent / f".{plan.target.name}.{uuid.uuid4().hex[:8]}.tmp"
    staging.mkdir(parents=True)
    try:
        card = write_export(plan, staging)
        _replace_folder(staging, plan.target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    log.info("export complete: %s", plan.target)

    tflite_state = card["files"]["tflite"]
    if tflite_state["status"] == "failed":
        raise AgetuneError(f"TFLite conversion failed in the TensorFlow Lite converter of TensorFlow "
                           f"{card['software']['tensorflow']}: {tflite_state['message']}. The other files, "
                           f"model.keras, saved_model/ and the model card are complete in {plan.target}. "
                           "Use those, or try another --tflite mode with --force.")
    return plan.target


def plan_export(run_dir: Path, out: Path | None, force: bool, retrain: bool, tflite: str,
                threshold: int) -> ExportPlan:
    """Check the options, the run folder and the output folder; nothing is written or trained yet."""
    if tflite not in TFLITE_MODES:
        raise AgetuneError(f"--tflite must be one of {', '.join(TFLITE_MODES)}, got {tflite!r}.")
    run = open_run(run_dir)
    best = select_best_trial(read_trials(run))
    if best is None:
        raise RunFolderError(f"{run.path} has no completed trial with a validation MAE, so there is no model "
                             f"to export. See {run.trials_csv} and {run.log_path}, then run or resume the search.")
    checkpoint = run.checkpoint_path(str(best["trial_id"]))
    if not checkpoint.is_file():
        raise RunFolderError(f"the best trial {best['trial_id']} of {run.path} has no checkpoint: {checkpoint} "
                             "is missing. Restore the run folder from a copy, or run the search again.")
    target = Path(out) if out is not None else run.path / EXPORT_FOLDER
    _check_target(target, run, force)

    split = load_split(run.split_path)
    # Evaluation reads the validation photos. Retraining and int8 calibration read the training photos too.
    needed = split if retrain or tflite == "int8" else split[split["subset"] == "validation"]
    missing = [path for path in needed["path"] if not Path(path).is_file()]
    if missing:
        raise DataError(f"{len(missing)} photos of {run.split_path} are missing, such as {missing[0]}. "
                        "The export reads them, so put the dataset back where the search read it.")
    return ExportPlan(run, best, target, retrain, tflite, threshold, split, run.read_config())


def _check_target(target: Path, run: RunFolder, force: bool) -> None:
    resolved = target.resolve()
    own = [run.config_path, run.split_path, run.tuner_dir, run.trials_dir, run.trials_csv, run.state_path,
           run.log_path, run.best_model_path, run.predictions_path]
    for path in own:
        if path.resolve().is_relative_to(resolved):
            raise AgetuneError(f"--out {target} would replace {path}, part of the run folder. "
                               f"Pass another --out, such as {run.path / EXPORT_FOLDER}.")
    if not target.exists():
        return
    if not force:
        raise AgetuneError(f"export folder {target} exists. Pass --force to replace it, or --out another folder.")
    if not target.is_dir():
        raise AgetuneError(f"--out {target} is a file, not an export folder, so --force does not replace it. "
                           "Pass another --out.")
    # --force replaces only an earlier export or an empty folder, never a folder a user typed by mistake.
    if any(target.iterdir()) and not (target / "model_card.json").is_file():
        raise AgetuneError(f"--out {target} exists and is not an agetune export (it has no model_card.json), "
                           "so --force does not replace it. Pass another --out.")


def _replace_folder(staging: Path, target: Path) -> None:
    """Move `staging` to `target`, replacing an existing `target` with two renames on the same file system."""
    if not target.exists():
        os.replace(staging, target)
        return
    old = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.old"
    os.replace(target, old)
    try:
        os.replace(staging, target)
    except OSError:
        os.replace(old, target)
        raise
    shutil.rmtree(old)


def write_export(plan: ExportPlan, folder: Path) -> dict[str, Any]:
    """Write the model files and the model card into `folder`; return the model card."""
    from tuner.search import load_trial_model

    run = plan.run
    log.info("loading trial %s of %s from its best-epoch checkpoint (epoch %d)", plan.trial_id, run.path,
             int(plan.best["best_epoch"]))
    checkpoint_model = load_trial_model(run, plan.trial_id)
    model = retrain_best(plan) if plan.retrain else checkpoint_model

    validation = plan.subset("validation")
    check_inference_deterministic(model, _first_images(validation, plan))

    keras_path = folder / "model.keras"
    log.info("saving %s", keras_path)
    drop_optimizer_state(model)
    model.save(keras_path)

    saved_model_path = folder / "saved_model"
    log.info("saving the SavedModel to %s", saved_model_path)
    write_saved_model(model, saved_model_path, plan.image_size)

    tflite_state = write_tflite(plan, saved_model_path, folder / "model.tflite")

    log.info("evaluating the export on %d validation photos", len(validation))
    exported = load_predictor(keras_path)
    formats = [load_predictor(saved_model_path)]
    if tflite_state["status"] == "written":
        formats.append(load_predictor(folder / "model.tflite"))
    ages, estimates, agreement = predict_subset(exported, formats, validation, plan)
    served = agreement["saved_model"]["max_abs_diff"]
    if served > SAVED_MODEL_TOLERANCE:
        raise AgetuneError(f"the SavedModel's ages differ from model.keras by up to {served:.3g} years on the "
                           "same photos, so the serving signature does not run the model as trained. "
                           "This is a bug in agetune's export; please report it with the log above.")

    if plan.retrain:
        # The retrained model has seen every validation photo, so its figures there are not held out.
        # The best trial's checkpoint has not seen them, so it gives the held-out estimate.
        log.info("evaluating the best trial's checkpoint on the validation photos (held out from it)")
        checkpoint = Predictor(run.path, "keras", (plan.image_size, plan.image_size),
                               lambda images: checkpoint_model.predict_on_batch(images).reshape(-1))
        _, held_out_estimates, _ = predict_subset(checkpoint, [], validation, plan)
        figures = evaluate(ages, held_out_estimates, plan.threshold)
    else:
        figures = evaluate(ages, estimates, plan.threshold)

    log.info("writing the model card")
    exported_mae = float(np.mean(np.abs(ages - estimates)))
    epochs = retrain_epochs(plan.best) if plan.retrain else int(plan.best["best_epoch"])
    card = build_model_card(plan, figures, agreement, tflite_state, exported_mae, epochs)
    # Plain writes: the whole folder appears at once when it is renamed into place.
    (folder / "model_card.json").write_text(json.dumps(_json_safe(card), indent=2) + "\n", encoding="utf-8")
    (folder / "model_card.md").write_text(render_model_card(card), encoding="utf-8")
    return card


def _json_safe(value: Any) -> Any:
    """Return `value` with NaN and infinite floats replaced by None, which every JSON reader accepts."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


def drop_optimizer_state(model: Any) -> None:
    """Compile `model` again with the same settings and a fresh optimizer, so its file contains no optimizer state.

    Loading a Keras Tuner checkpoint builds the optimizer, and Adam's two
    slots per weight would triple the size of model.keras (95 MB to 283 MB for
    ResNet50). Fine-tuning the exported model starts a fresh optimizer anyway.
    """
    import keras

    model.compile(**keras.saving.deserialize_keras_object(model.get_compile_config()))


def write_saved_model(model: Any, path: Path, image_size: int) -> None:
    """Write `model` as a SavedModel whose `serve` and `serving_default` signatures run it in inference mode.

    `model.export(path, format="tf_saved_model")` traces a plain `model(images)`
    call. In Keras 3.15 that call runs the augmentation layers (their
    `training` argument defaults to True) and BatchNormalization on batch
    statistics, so served ages would change with every call and batch. Tracing
    `model(images, training=False)` instead leaves no random op in the graph,
    which TFLite needs too.
    """
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name="serve", fn=lambda image: model(image, training=False),
                         input_signature=[tf.TensorSpec((None, image_size, image_size, 3), tf.uint8, name="image")])
    archive.write_out(str(path), verbose=False)


def write_tflite(plan: ExportPlan, saved_model_path: Path, path: Path) -> dict[str, Any]:
    """Convert the SavedModel to TFLite; return {"status": "written"/"skipped"/"failed", "quantization", "message"}.

    A converter failure is logged and returned, not raised, so that the other files are still written.
    """
    if plan.tflite == "none":
        log.info("skipping TFLite (--tflite none)")
        return {"status": "skipped", "quantization": None, "message": "--tflite none"}
    import tensorflow as tf
    # The converter's own error type. TensorFlow 2.21 defines it here and exports it nowhere public.
    from tensorflow.lite.python.convert_phase import ConverterError

    log.info("converting to TFLite with %s quantisation: %s", plan.tflite, path)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_path))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if plan.tflite == "float16":
        converter.target_spec.supported_types = [tf.float16]
    else:
        # Integer weights and activations where the op has an int8 kernel, float elsewhere;
        # the input stays uint8 pixels and the output float32 years.
        converter.representative_dataset = lambda: _representative_images(plan)
    try:
        data = converter.convert()
    except (ConverterError, RuntimeError) as error:
        message = first_line(str(error))
        log.error("TFLite conversion failed: %s", message)
        return {"status": "failed", "quantization": plan.tflite, "message": message}
    path.write_bytes(data)
    return {"status": "written", "quantization": plan.tflite, "message": None}


def _representative_images(plan: ExportPlan) -> Iterator[list[np.ndarray]]:
    from tuner.data import make_dataset

    train = plan.subset("train")
    sample = train.sample(n=min(REPRESENTATIVE_PHOTOS, len(train)), random_state=plan.seed)
    for images, _ in make_dataset(sample, plan.image_size, 1, training=False, cache=None):
        yield [images.numpy()]


def _first_images(frame: pd.DataFrame, plan: ExportPlan) -> np.ndarray:
    from tuner.data import make_dataset

    images, _ = next(iter(make_dataset(frame, plan.image_size, plan.batch_size, training=False, cache=None)))
    return images.numpy()


def check_inference_deterministic(model: Any, images: np.ndarray) -> None:
    """Raise AgetuneError unless two inference passes over `images` give identical ages.

    Augmentation and dropout are random in training mode only; identical
    passes show they are inactive at inference, as the exported model needs.
    """
    first = np.asarray(model.predict_on_batch(images))
    second = np.asarray(model.predict_on_batch(images))
    if not np.array_equal(first, second):
        difference = float(np.max(np.abs(first - second)))
        raise AgetuneError(f"two inference passes over the same photos differ by up to {difference:.3g} years, "
                           "so augmentation or dropout is active at inference. The model cannot be exported.")
    log.info("checked: augmentation and dropout are inactive at inference (two passes gave identical ages)")


def predict_subset(main: Predictor, others: list[Predictor], frame: pd.DataFrame,
                   plan: ExportPlan) -> tuple[np.ndarray, np.ndarray, dict[str, dict[str, float]]]:
    """Return the true ages and `main`'s estimates on `frame`, and how far `others` are from them.

    The comparison covers the first `AGREEMENT_PHOTOS` photos and gives, per
    format, the photo count and the maximum and mean absolute difference in years.
    """
    from tuner.data import make_dataset

    ages: list[np.ndarray] = []
    estimates: list[np.ndarray] = []
    differences: dict[str, list[np.ndarray]] = {other.kind: [] for other in others}
    compared = 0
    for images, batch_ages in make_dataset(frame, plan.image_size, plan.batch_size, training=False, cache=None):
        pixels = images.numpy()
        batch_estimates = main.predict(pixels)
        ages.append(batch_ages.numpy().astype(np.float64))
        estimates.append(batch_estimates)
        if compared < AGREEMENT_PHOTOS and others:
            count = min(len(pixels), AGREEMENT_PHOTOS - compared)
            for other in others:
                differences[other.kind].append(np.abs(other.predict(pixels[:count]) - batch_estimates[:count]))
            compared += count
    agreement = {}
    for kind, parts in differences.items():
        values = np.concatenate(parts)
        agreement[kind] = {"photos": int(values.size), "max_abs_diff": float(values.max()),
                           "mean_abs_diff": float(values.mean())}
        log.info("%s vs model.keras on %d validation photos: max difference %.4g years, mean %.4g",
                 kind, values.size, values.max(), values.mean())
    return np.concatenate(ages), np.concatenate(estimates), agreement


# --------------------------------------------------------------------------
# Retraining


def retrain_epochs(best: pd.Series) -> int:
    """Return the epoch count to retrain for: the best trial's best epoch, counted from its first round.

    Keras numbers the epochs of a Hyperband round from the round's
    initial_epoch, so the recorded best_epoch already includes the epochs
    the trial's earlier rounds trained.
    """
    return int(best["best_epoch"])


def retrain_best(plan: ExportPlan) -> Any:
    """Train the best trial's hyperparameters from scratch on train + validation; return a float32 model."""
    import keras
    import keras_tuner

    from tuner.data import make_dataset
    from tuner.hypermodel import AgeHyperModel, resolve_weights
    from tuner.search import resolve_switch
    from tuner.space import parse_space

    run = plan.run
    space = parse_space(plan.config["space"], name=plan.config["space_name"])
    state = json.loads((run.tuner_dir / f"trial_{plan.trial_id}" / "trial.json").read_text(encoding="utf-8"))
    hp = keras_tuner.HyperParameters.from_config(state["hyperparameters"])
    epochs = retrain_epochs(plan.best)
    weights = resolve_weights(space.setting("backbone.weights"))
    # As `agetune search` does by default: float16 compute and XLA on a GPU, plain float32 on a CPU.
    mixed_precision = resolve_switch("auto", "mixed-precision")
    jit_compile = resolve_switch("auto", "xla")
    log.info("retraining trial %s's hyperparameters on all %d photos (train + validation) for %d epochs",
             plan.trial_id, len(plan.split), epochs)

    model = AgeHyperModel(space, weights, mixed_precision=mixed_precision, jit_compile=jit_compile,
                          seed=plan.seed).build(hp)
    data = make_dataset(plan.split, plan.image_size, plan.batch_size, training=True, cache="memory", seed=plan.seed)
    logger = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: log.info(
        "retrain epoch %d/%d: loss %.3f, mae %.3f", epoch + 1, epochs, logs["loss"], logs["mae"]))
    # The dataset shuffles itself every epoch, so Keras' own shuffle flag does not apply to it.
    history = model.fit(data, epochs=epochs, callbacks=[keras.callbacks.TerminateOnNaN(), logger], verbose=0,
                        shuffle=False)
    losses = history.history.get("loss", [])
    if len(losses) < epochs or not all(math.isfinite(loss) for loss in losses):
        raise AgetuneError(f"retraining trial {plan.trial_id}'s hyperparameters stopped with a NaN or infinite "
                           "loss. Export without --retrain, or pick a run whose best trial trains stably.")

    # A float32 copy: the weights of a mixed precision model are float32 already, and a float32 graph
    # converts to TFLite and serves on any device.
    exported = AgeHyperModel(space, weights_path=None, seed=plan.seed).build(hp)
    exported.set_weights(model.get_weights())
    return exported
