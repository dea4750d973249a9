"""Age estimates for new photos with an exported model: `.keras`, SavedModel or `.tflite`.

Every format takes raw uint8 RGB images of the model's input size and
returns ages in years; `load_predictor` hides the differences. Photos are
decoded and resized exactly as `tuner.data.make_dataset` does for training,
so an estimate here equals the estimate on the validation pipeline.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tuner.errors import AgetuneError, first_line

log = logging.getLogger(__name__)

#: Suffixes, in lower case, of the files taken from a folder; other files there are ignored.
PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
#: Photos decoded and estimated at a time; bounds the memory of a large folder.
BATCH_SIZE = 32
CSV_COLUMNS = ("file", "age", "id_check", "error")


class PhotoError(Exception):
    """A photo that cannot be read or decoded; the message is the reason."""


@dataclass
class Predictor:
    """A loaded model of any export format: its input size and a function from uint8 images to ages."""

    path: Path
    kind: str
    #: Input (height, width) in pixels; photos are resized to it.
    image_size: tuple[int, int]
    #: Takes uint8 images [batch, height, width, 3] and returns ages in years, shape [batch].
    predict: Callable[[np.ndarray], np.ndarray]
    #: The loaded model object. A SavedModel signature holds only weak references to its variables,
    #: so this reference keeps them alive while `predict` is in use.
    model: Any = None


@dataclass
class PhotoEstimate:
    """One row of `agetune predict`: the age estimate of a photo, or why it has none."""

    file: str
    age: float | None = None
    error: str | None = None

    def needs_id_check(self, threshold: float) -> bool | None:
        """Return whether the till requests an ID (estimate below `threshold`), or None without an estimate."""
        return None if self.age is None else self.age < threshold


# --------------------------------------------------------------------------
# Models


def load_predictor(path: Path) -> Predictor:
    """Load a `.keras` file, a SavedModel folder or a `.tflite` file; raise AgetuneError if it cannot be."""
    path = Path(path)
    if not path.exists():
        raise AgetuneError(f"model {path} not found. Pass a .keras file, a SavedModel folder or a .tflite file, "
                           "such as those `agetune export-best` writes.")
    import tensorflow as tf

    try:
        if path.is_dir():
            if not (path / "saved_model.pb").is_file():
                raise AgetuneError(f"{path} is a folder without saved_model.pb, so it is not a SavedModel. "
                                   "Pass the saved_model/ folder of an export, a .keras file or a .tflite file.")
            return _load_saved_model(path)
        if path.suffix == ".keras":
            return _load_keras(path)
        if path.suffix == ".tflite":
            return _load_tflite(path)
    except (OSError, ValueError, tf.errors.OpError) as error:
        raise AgetuneError(f"cannot load the model {path}: {first_line(str(error)).rstrip('.')}. "
                           "Export it again with `agetune export-best`.") from None
    raise AgetuneError(f"model {path} has an unknown format. Pass a .keras file, a SavedModel folder "
                       "or a .tflite file.")


def _load_keras(path: Path) -> Predictor:
    import keras

    model = keras.saving.load_model(path, compile=False)
    shape = model.input_shape
    if not isinstance(shape, tuple) or len(shape) != 4 or None in shape[1:3]:
        raise AgetuneError(f"{path} takes inputs of shape {shape}; an age model takes images of a fixed size, "
                           "[batch, height, width, 3]. Export it with `agetune export-best`.")
    height, width = shape[1:3]

    def predict(images: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict_on_batch(images), dtype=np.float64).reshape(-1)

    return Predictor(path, "keras", (int(height), int(width)), predict, model=model)


def _load_saved_model(path: Path) -> Predictor:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    if "serving_default" not in loaded.signatures:
        raise AgetuneError(f"SavedModel {path} has no serving_default signature. Export it with "
                           "`agetune export-best`, which writes one.")
    signature = loaded.signatures["serving_default"]
    inputs = signature.structured_input_signature[1]
    if len(inputs) != 1:
        raise AgetuneError(f"SavedModel {path} takes {len(inputs)} inputs ({', '.join(sorted(inputs))}); "
                           "an age model takes one image tensor.")
    if len(signature.structured_outputs) != 1:
        raise AgetuneError(f"SavedModel {path} returns {len(signature.structured_outputs)} outputs; an age model "
                           "returns one tensor of ages.")
    name, spec = next(iter(inputs.items()))
    height, width = spec.shape[1], spec.shape[2]
    if height is None or width is None:
        raise AgetuneError(f"SavedModel {path} accepts images of any size, so the size to resize photos to "
                           "is unknown. Export it with a fixed input size.")

    def predict(images: np.ndarray) -> np.ndarray:
        outputs = signature(**{name: tf.constant(images, dtype=spec.dtype)})
        # The signature returns a dict of one tensor, named by the exporter (`output_0` in Keras 3).
        (ages,) = outputs.values()
        return ages.numpy().astype(np.float64).reshape(-1)

    return Predictor(path, "saved_model", (int(height), int(width)), predict, model=loaded)


def _load_tflite(path: Path) -> Predictor:
    interpreter = _tflite_interpreter_class()(model_path=str(path), num_threads=os.cpu_count())
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        raise AgetuneError(f"TFLite model {path} has {len(inputs)} inputs and {len(outputs)} outputs; an age "
                           "model has one image input and one output.")
    input_detail, output_detail = inputs[0], outputs[0]
    height, width = (int(value) for value in input_detail["shape"][1:3])
    batch_size = [0]

    def predict(images: np.ndarray) -> np.ndarray:
        if batch_size[0] != len(images):
            # The batch dimension of a converted Keras model is dynamic (-1); resize it to the batch.
            interpreter.resize_tensor_input(input_detail["index"], [len(images), height, width, 3])
            interpreter.allocate_tensors()
            batch_size[0] = len(images)
        interpreter.set_tensor(input_detail["index"], _quantize(images, input_detail))
        interpreter.invoke()
        ages = interpreter.get_tensor(output_detail["index"])
        return _dequantize(ages, output_detail).reshape(-1)

    return Predictor(path, "tflite", (height, width), predict, model=interpreter)


def _tflite_interpreter_class() -> type:
    """Return LiteRT's interpreter when the ai-edge-litert package is installed, else TensorFlow's."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        # TensorFlow 2.21 still ships tf.lite.Interpreter and warns on every use that it moved to LiteRT.
        warnings.filterwarnings("ignore", message=r"\s*Warning: tf\.lite\.Interpreter is deprecated",
                                category=UserWarning)
        return tf.lite.Interpreter
    return Interpreter


def _quantize(images: np.ndarray, detail: dict) -> np.ndarray:
    """Convert images to the interpreter's input type, applying its scale and zero point when it has them."""
    scale, zero_point = detail["quantization"]
    dtype = detail["dtype"]
    if scale and np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.round(images / scale + zero_point), info.min, info.max).astype(dtype)
    return images.astype(dtype)


def _dequantize(values: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    if scale and np.issubdtype(values.dtype, np.integer):
        return (values.astype(np.float64) - zero_point) * scale
    return values.astype(np.float64)


# --------------------------------------------------------------------------
# Photos


def collect_photos(paths: Sequence[Path]) -> list[Path]:
    """Expand folders into their photos (not recursive, sorted by name) and keep files as given.

    A file named on the command line is kept whatever its suffix, so that a
    wrong file is reported as unreadable instead of silently ignored.
    """
    photos: list[Path] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            found = sorted(entry for entry in path.iterdir()
                           if entry.is_file() and entry.suffix.lower() in PHOTO_SUFFIXES)
            if not found:
                log.warning("no photos (%s) in %s", ", ".join(sorted(PHOTO_SUFFIXES)), path)
            photos.extend(found)
        else:
            photos.append(path)
    return photos


def read_photo(path: Path, image_size: tuple[int, int]) -> np.ndarray:
    """Decode a photo to uint8 RGB and resize it to `image_size` (height, width) as the training pipeline does.

    Raises PhotoError with the reason when the file is missing, unreadable or not a decodable image.
    """
    import tensorflow as tf

    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise PhotoError("file not found") from None
    except OSError as error:
        raise PhotoError(f"cannot read the file: {error.strerror or error}") from None
    if not data:
        raise PhotoError("empty file (0 bytes)")
    try:
        image = tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)
    except tf.errors.InvalidArgumentError as error:
        raise PhotoError(f"not a decodable image: {_clean_tf_message(error.message)}") from None
    # The same resize, rounding and cast as tuner.data.make_dataset.
    image = tf.image.resize(image, image_size)
    return tf.saturate_cast(tf.round(image), tf.uint8).numpy()


def _clean_tf_message(message: str) -> str:
    """Keep the first line of a TensorFlow error without its `{{function_node ...}}` prefix and `[Op:...]` suffix."""
    text = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", first_line(message))
    return re.sub(r"\s*\[Op:\w+\]\s*$", "", text)


def estimate_ages(predictor: Predictor, photos: Sequence[Path],
                  batch_size: int = BATCH_SIZE) -> list[PhotoEstimate]:
    """Return one estimate per photo, in order; unreadable photos get an error instead of an age."""
    results: list[PhotoEstimate] = []
    for chunk in _chunks(list(photos), batch_size):
        images: list[np.ndarray] = []
        readable: list[PhotoEstimate] = []
        for path in chunk:
            estimate = PhotoEstimate(file=str(path))
            results.append(estimate)
            try:
                images.append(read_photo(path, predictor.image_size))
            except PhotoError as error:
                estimate.error = str(error)
                continue
            readable.append(estimate)
        if images:
            ages = predictor.predict(np.stack(images))
            for estimate, age in zip(readable, ages, strict=True):
                estimate.age = float(age)
    return results


def _chunks(items: list[Path], size: int) -> Iterator[list[Path]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# --------------------------------------------------------------------------
# Output


def format_table(estimates: Sequence[PhotoEstimate], threshold: float) -> str:
    """Return the estimated photos as an aligned text table: file, age (1 decimal), id_check (yes/no)."""
    rows = [(estimate.file, f"{estimate.age:.1f}", _yes_no(estimate.needs_id_check(threshold)))
            for estimate in estimates if estimate.age is not None]
    width = max([len("file")] + [len(row[0]) for row in rows])
    lines = [f"{'file':<{width}}  {'age':>5}  id_check"]
    lines += [f"{file:<{width}}  {age:>5}  {flag}" for file, age, flag in rows]
    return "\n".join(lines)


def format_csv(estimates: Sequence[PhotoEstimate], threshold: float) -> str:
    """Return every photo as CSV rows (file, age, id_check, error); unreadable photos have only file and error."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for estimate in estimates:
        age = "" if estimate.age is None else f"{estimate.age:.1f}"
        writer.writerow([estimate.file, age, _yes_no(estimate.needs_id_check(threshold)), estimate.error or ""])
    return buffer.getvalue()


def _yes_no(flag: bool | None) -> str:
    if flag is None:
        return ""
    return "yes" if flag else "no"


def predict_photos(model: Path, photos: list[Path], out: Path | None, threshold: int) -> None:
    """Estimate the age of each photo and print a table, or write a CSV to `out`.

    `photos` are files or folders (see `collect_photos`). `id_check` is "yes"
    when the unrounded estimate is below `threshold` years. Unreadable photos
    are listed on stderr with the reason, and in the CSV with an error column,
    while the others are still estimated. Raises AgetuneError when no photo is
    given or none of them can be read, so the command exits with code 1.
    """
    import typer

    files = collect_photos(photos)
    if not files:
        raise AgetuneError("no photos to estimate: the folders given contain no "
                           + "/".join(sorted(PHOTO_SUFFIXES)) + " files. Pass photos or folders of photos.")
    missing = [str(path) for path in files if not path.exists()]
    if len(missing) == len(files):
        # Loading a model takes seconds; a mistyped path should not wait for it.
        raise AgetuneError("no such file or folder: " + ", ".join(missing[:5])
                           + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
                           + ". Pass photos or folders of photos.")
    predictor = load_predictor(model)
    log.info("estimating %s with %s (%s, %dx%d px)", "1 photo" if len(files) == 1 else f"{len(files)} photos",
             predictor.path, predictor.kind,
             *predictor.image_size)
    estimates = estimate_ages(predictor, files)

    failed = [estimate for estimate in estimates if estimate.error is not None]
    for estimate in failed:
        typer.echo(f"skipped {estimate.file}: {estimate.error}", err=True)
    if len(failed) == len(estimates):
        raise AgetuneError(f"none of the {len(estimates)} photos could be read. See the reasons above.")

    if out is None:
        typer.echo(format_table(estimates, threshold))
        return
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(format_csv(estimates, threshold), encoding="utf-8")
    typer.echo(f"wrote {len(estimates) - len(failed)} estimates and {len(failed)} unreadable photos to {out}")
