"""The model card of an exported model: what it is, how well it does, and its limits.

`build_model_card` gathers the facts as a JSON-ready dict (model_card.json),
and `render_model_card` writes them as Markdown (model_card.md) for people
who decide whether the model may run at a till.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tuner import __version__
from tuner.run import RunFolder, read_trials

if TYPE_CHECKING:
    # Only for annotations: tuner.export imports this module.
    from tuner.export import ExportPlan



def build_model_card(plan: ExportPlan, figures: dict[str, Any], agreement: dict[str, dict[str, float]],
                     tflite_state: dict[str, Any], exported_mae: float, epochs: int) -> dict[str, Any]:
    """Return the model card as a JSON-ready dict.

    `figures` are the exported model's validation figures, `agreement` how
    far each other format's estimates are from model.keras, and `epochs` how
    many epochs the exported weights trained.
    """
    import keras
    import keras_tuner
    import tensorflow as tf

    from tuner.synthetic import MARKER_FILE

    run, best, config = plan.run, plan.best, plan.config
    space = config["space"]
    size = plan.image_size
    train = plan.subset("train")
    data_root = Path(config["data"]["root"])
    synthetic = bool(config["data"].get("synthetic")) or (data_root / MARKER_FILE).is_file()
    state = run.read_state()
    trials = read_trials(run)
    hyperparameters, searched = _hyperparameters(run, plan.trial_id, space)
    weights = space["backbone"]["weights"]
    initialisation = {"imagenet": "ImageNet", "none": "random"}.get(weights, f"weights file {weights}")

    validation = dict(figures)
    if plan.retrain:
        validation.update(
            held_out=False,
            source=f"best trial {plan.trial_id}'s checkpoint before retraining, on the validation photos it "
                   "never trained on; the exported model trained on them",
            mae=float(best["val_mae"]), mape=float(best["val_mape"]),
            recorded_by_search=True, exported_model_mae_not_held_out=exported_mae)
    else:
        validation.update(held_out=True, source="the exported model on the validation photos",
                          recorded_by_search=False)

    card: dict[str, Any] = {
        "model": {"name": "resnet50_age", "task": "age estimation from a face photo, in years",
                  "backbone": "ResNet50", "initialisation": initialisation},
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "input": {"shape": [size, size, 3], "dtype": "uint8", "format": "RGB", "range": [0, 255],
                  "resize": f"any photo is resized to {size}x{size} px without keeping the aspect ratio",
                  "preprocessing": "inside the model (ResNet50 caffe-style mean subtraction)"},
        "output": {"name": "age", "shape": [1], "unit": "years", "dtype": "float32"},
        "files": {
            "keras": "model.keras",
            "saved_model": {"path": "saved_model", "signature": "serving_default",
                            "input": f"uint8 [None, {size}, {size}, 3]", "output": "float32 [None, 1], years"},
            "tflite": {"path": "model.tflite" if tflite_state["status"] == "written" else None, **tflite_state},
        },
        "training": {
            "retrained": plan.retrain,
            "photos": "train + validation" if plan.retrain else "train",
            "epochs": epochs,
            "checkpoint": None if plan.retrain else str(run.checkpoint_path(plan.trial_id)),
        },
        "hyperparameters": hyperparameters,
        "searched": searched,
        "data": {
            "root": str(data_root), "synthetic": synthetic, "photos": len(plan.split),
            "train": len(train), "validation": len(plan.split) - len(train),
            "age_min": float(plan.split["age"].min()), "age_max": float(plan.split["age"].max()),
            "train_age_min": float(train["age"].min()), "train_age_max": float(train["age"].max()),
        },
        "validation": validation,
        "export_checks": {"inference_deterministic": True, "agreement_with_keras": agreement},
        "search": {
            "run": str(run.path.resolve()), "space": config["space_name"], "tuner": space["search"]["tuner"],
            "objective": space["search"]["objective"], "status": state.get("status"),
            "trials": len(trials), "completed": int((trials["status"] == "COMPLETED").sum()),
            "failed": int((trials["status"] == "FAILED").sum()),
            "best_trial": plan.trial_id, "best_epoch": int(best["best_epoch"]),
            "initial_epoch": int(best["initial_epoch"]), "val_mae": float(best["val_mae"]),
            "val_mape": float(best["val_mape"]),
        },
        "software": {"agetune": __version__, "python": platform.python_version(), "tensorflow": tf.__version__,
                     "keras": keras.__version__, "keras_tuner": keras_tuner.__version__,
                     "numpy": np.__version__},
    }
    card["limits"] = _limits(card)
    return card


def _hyperparameters(run: RunFolder, trial_id: str,
                     space: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    """Return every model and training setting of the trial by `section.key`, and the keys the search chose."""
    state = json.loads((run.tuner_dir / f"trial_{trial_id}" / "trial.json").read_text(encoding="utf-8"))
    values = {key: value for key, value in state["hyperparameters"]["values"].items() if not key.startswith("tuner/")}
    settings: dict[str, Any] = {}
    for section in ("data", "backbone", "head", "augmentation", "training"):
        for key, value in space.get(section, {}).items():
            full_key = f"{section}.{key}"
            settings[full_key] = values.get(full_key, value)
    return settings, sorted(values)


def _limits(card: dict[str, Any]) -> list[str]:
    data, validation = card["data"], card["validation"]
    limits = []
    if data["synthetic"]:
        limits.append("TRAINED ON SYNTHETIC DATA: the photos were generated cartoon faces, not real people. "
                      "The figures say nothing about real customers; do not use this model at a till.")
    limits.append(f"Trained on ages {data['train_age_min']:g} to {data['train_age_max']:g} years; estimates "
                  "outside this range are extrapolations.")
    limits.append("Not evaluated on other cameras, lighting or populations than those of the training photos; "
                  "check it on photos from the target tills before use.")
    limits.append(f"Validation figures come from {validation['photos']} photos; see the photo count of each "
                  "age band before trusting a band's MAE.")
    limits.append(f"The backbone started from {card['model']['initialisation']} weights.")
    if card["training"]["retrained"]:
        limits.append("Retrained on train + validation, so no held-out photos remain: the validation figures "
                      "are the best trial's before retraining, not the exported model's.")
    tflite = card["files"]["tflite"]
    if tflite["status"] == "written":
        agreement = card["export_checks"]["agreement_with_keras"].get("tflite")
        if agreement:
            limits.append(f"model.tflite is {tflite['quantization']} quantised: its estimates differ from "
                          f"model.keras by up to {agreement['max_abs_diff']:.2g} years on "
                          f"{agreement['photos']} validation photos.")
    return limits


def render_model_card(card: dict[str, Any]) -> str:
    """Return the model card as Markdown."""
    search = card["search"]
    lines = [f"# Model card: ResNet50 age regressor (run {Path(search['run']).name}, trial {search['best_trial']})", ""]
    if card["data"]["synthetic"]:
        lines += ["> **WARNING: TRAINED ON SYNTHETIC DATA.** The training photos were generated cartoon faces,",
                  "> not real people. Nothing here describes how the model does on real customers.", ""]
    lines += [f"Estimates a person's age in years from a face photo. Created {card['created_at']} by agetune "
              f"{card['software']['agetune']}.", ""]
    lines += _interface_section(card)
    lines += _data_section(card)
    lines += _validation_section(card)

    lines += ["## Export checks", "",
              "- Two inference passes give identical ages, so augmentation and dropout are inactive."]
    for kind, agreement in card["export_checks"]["agreement_with_keras"].items():
        lines.append(f"- {kind} vs model.keras on {agreement['photos']} validation photos: max difference "
                     f"{agreement['max_abs_diff']:.2g} years, mean {agreement['mean_abs_diff']:.2g}.")

    lines += ["", "## Search", "",
              f"- Run {search['run']}, space {search['space']}, tuner {search['tuner']}, objective "
              f"{search['objective']}, status {search['status']}.",
              f"- {search['trials']} trials: {search['completed']} completed, {search['failed']} failed.",
              f"- Best trial {search['best_trial']}: val_mae {search['val_mae']:.2f} at epoch "
              f"{search['best_epoch']}.", ""]

    lines += ["## Software", ""] + [f"- {name} {version}" for name, version in card["software"].items()]
    lines += ["", "## Limits", ""] + [f"- {limit}" for limit in card["limits"]]
    return "\n".join(lines) + "\n"


def _interface_section(card: dict[str, Any]) -> list[str]:
    size = card["input"]["shape"][0]
    lines = [
        "## Input and output", "",
        f"- Input: uint8 RGB images of {size}x{size}x3 pixels, values 0 to 255, batch first "
        f"([None, {size}, {size}, 3]). Any photo is resized to {size}x{size} px without keeping the aspect "
        "ratio. Preprocessing is inside the model.",
        "- Output: the estimated age in years, float32, shape [None, 1].", "",
        "## Files", "",
        "- `model.keras`: load with `keras.saving.load_model` and call `model.predict(images)` or "
        "`model(images, training=False)`. A plain `model(images)` call runs the augmentation layers and "
        "BatchNormalization in training mode (Keras 3 defaults), which gives random ages and changes the model.",
        "- `saved_model/`: TensorFlow SavedModel with the `serving_default` signature, servable by TF Serving.",
    ]
    tflite = card["files"]["tflite"]
    if tflite["status"] == "written":
        lines.append(f"- `model.tflite`: TensorFlow Lite, {tflite['quantization']} quantised.")
    else:
        lines.append(f"- No `model.tflite`: {tflite['status']} ({tflite['message']}).")
    return lines + [""]


def _data_section(card: dict[str, Any]) -> list[str]:
    data, training = card["data"], card["training"]
    lines = ["## Training data", "",
             f"- {data['photos']} photos from {data['root']}: {data['train']} for training and "
             f"{data['validation']} for validation.",
             f"- Ages {data['age_min']:g} to {data['age_max']:g} years. Training ages {data['train_age_min']:g} "
             f"to {data['train_age_max']:g}.",
             f"- Synthetic: {'YES' if data['synthetic'] else 'no'}.", ""]
    if training["retrained"]:
        lines.append(f"Retrained from scratch on train + validation for {training['epochs']} epochs, the best "
                     "trial's best epoch count.")
    else:
        lines.append(f"The best trial's checkpoint after epoch {training['epochs']}, trained on the training photos.")

    lines += ["", "## Hyperparameters", "", "| setting | value | searched |", "|---|---|---|"]
    for key, value in card["hyperparameters"].items():
        lines.append(f"| {key} | {value} | {'yes' if key in card['searched'] else ''} |")
    return lines + [""]


def _validation_section(card: dict[str, Any]) -> list[str]:
    validation = card["validation"]
    held_out = "held out" if validation["held_out"] else "recorded by the search, held out from the best trial"
    lines = ["## Validation", "", f"Source: {validation['source']}.", "",
             f"- MAE: {validation['mae']:.2f} years. MAPE: {validation['mape']:.1f}% ({held_out}).",
             f"- Photos: {validation['photos']}.", ""]
    if card["training"]["retrained"]:
        lines += [f"The exported model's MAE on the same photos is "
                  f"{validation['exported_model_mae_not_held_out']:.2f} years, but it trained on them, so that "
                  "figure is not held out.", ""]

    lines += ["| age band | photos | MAE (years) | bias (years) |", "|---|---|---|---|"]
    for band in validation["mae_by_age_band"]:
        mae = "n/a" if band["mae"] is None else f"{band['mae']:.2f}"
        bias = "n/a" if band["bias"] is None else f"{band['bias']:+.2f}"
        lines.append(f"| {band['band']} | {band['photos']} | {mae} | {bias} |")

    check = validation["age_check"]
    lines += ["", f"### Age check (legal age {check['legal_age']}, ID check below an estimate of "
              f"{check['threshold']})", "",
              f"- Minors estimated at or above {check['threshold']} (would buy without an ID check): "
              f"{check['minors_passed']} of {check['minors']} ({_percent(check['minors_passed_share'])}).",
              f"- Adults sent to an ID check: {check['adults_checked']} of {check['adults']} "
              f"({_percent(check['adults_checked_share'])}).", ""]
    return lines


def _percent(share: float | None) -> str:
    return "n/a" if share is None else f"{100.0 * share:.1f}%"
