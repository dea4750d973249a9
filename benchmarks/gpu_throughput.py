"""Benchmark ResNet50 training speed on a GPU at 224 px: mixed precision, XLA, batch size and input pipeline.

Measures training images per second of the `baseline` model (random
weights) built by `AgeHyperModel`, for:

- batch 32, 64 and 128 with mixed precision and XLA requested. Each is fed
  from uint8 tensors already in memory (the compute limit) and from
  agetune's pipeline (`tuner.data.make_dataset`, memory cache, after one
  warm-up epoch), in interleaved repetitions on the same compiled model;
- at one batch size, float32 and mixed precision without XLA, fed from
  memory, to show what each switch gives;
- at the same batch size, mixed precision and XLA with the flip as the only
  augmentation. Keras 3 turns XLA off for a whole model that contains a
  layer without XLA support, and RandomTranslation (the baseline's width
  and height shift), RandomRotation and RandomZoom are such layers. The
  "XLA" column prints what Keras really compiled with.

Photos come from `--faces` when that folder exists, else from a synthetic
dataset written to a temporary folder. Without a GPU the script prints that
none was found and exits 0; `--allow-cpu` runs a 2-step smoke test instead.
About 3-5 minutes on one V100-class GPU, most of it XLA compilation.

Reference figures to compare with (other code, other machines):
- NVIDIA DeepLearningExamples, ResNet-50 v1.5 for TensorFlow (README of
  TensorFlow/Classification/ConvNets/resnet50v1.5, "Training performance:
  NVIDIA DGX-1 (8x V100 16G)"): 1270 images/s on 1 V100 with mixed
  precision and XLA at batch 256, 412 images/s in FP32 with XLA at batch 128.
- The study: 7 epochs of 7,591 photos in about 9 minutes on 4 V100s, about
  98 images/s (derived, not measured).

    .venv/bin/python benchmarks/gpu_throughput.py
    .venv/bin/python benchmarks/gpu_throughput.py --allow-cpu --image-size 64 --batch-sizes 8
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import common

REFERENCES = [
    ("NVIDIA DeepLearningExamples RN50 v1.5 TF, 1x V100, mixed precision + XLA, batch 256", 1270.0),
    ("NVIDIA DeepLearningExamples RN50 v1.5 TF, 1x V100, FP32 + XLA, batch 128", 412.0),
    ("the study, 4x V100, 7 x 7,591 photos in ~9 min (derived)", 7 * 7591 / 540),
]


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-size", type=int, default=224, help="input size in pixels (default 224)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64, 128],
                        help="batch sizes with mixed precision and XLA (default 32 64 128)")
    parser.add_argument("--switch-batch", type=int, default=64,
                        help="batch size of the float32 and no-XLA comparisons (default 64; 0 skips them)")
    parser.add_argument("--steps", type=int, default=60, help="timed steps per repetition (default 60)")
    parser.add_argument("--repetitions", type=int, default=2, help="repetitions per feed (default 2)")
    parser.add_argument("--photos", type=int, default=2048, help="photos in agetune's pipeline (default 2048)")
    parser.add_argument("--faces", type=str, default=str(common.FACES_ROOT), help="folder of the face dataset")
    parser.add_argument("--allow-cpu", action="store_true",
                        help="without a GPU, run a 2-step smoke test instead of exiting")
    parser.add_argument("--json", type=str, default=None, help="also write the results to this JSON file")
    return parser.parse_args()


def photo_frame(arguments: argparse.Namespace, workspace: Path):
    faces = Path(arguments.faces)
    if faces.is_dir():
        return common.faces_subset(min(arguments.photos, 7591), seed=0, root=faces), f"{faces}"
    from tuner.data import DatasetLayout, load_dataset
    from tuner.synthetic import make_synthetic_faces

    count = min(arguments.photos, 512)
    layout = make_synthetic_faces(workspace / "faces", count=count, image_size=arguments.image_size, seed=0)
    return load_dataset(DatasetLayout(root=layout.root), verify_images=False), f"synthetic ({count} photos)"


def build_model(image_size: int, mixed_precision: bool, xla: bool, shifts: bool = True):
    """Build the baseline model; without `shifts`, the flip is its only augmentation."""
    import keras_tuner

    from tuner.hypermodel import AgeHyperModel
    from tuner.space import load_space

    overrides = {"data.image_size": image_size, "backbone.weights": "none"}
    if not shifts:
        overrides.update({"augmentation.width_shift": 0.0, "augmentation.height_shift": 0.0})
    space = load_space("baseline").with_overrides(overrides)
    hypermodel = AgeHyperModel(space, weights_path=None, mixed_precision=mixed_precision, jit_compile=xla, seed=0)
    return hypermodel.build(keras_tuner.HyperParameters())


def memory_dataset(image_size: int, batch_size: int, count: int):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(count, image_size, image_size, 3), dtype=np.uint8)
    ages = rng.uniform(1, 90, size=count).astype(np.float32)
    return tf.data.Dataset.from_tensor_slices((images, ages)).repeat().batch(batch_size).prefetch(
        tf.data.AUTOTUNE)


def pipeline_dataset(frame, image_size: int, batch_size: int):
    from tuner.data import make_dataset

    dataset = make_dataset(frame, image_size, batch_size, training=True, cache="memory", seed=0)
    for _ in dataset:  # the warm-up epoch fills the cache
        pass
    # Whole batches only, so that every timed step has `batch_size` images.
    return dataset.unbatch().repeat().batch(batch_size).prefetch(2)


def train_rate(model, dataset, steps: int, batch_size: int) -> float:
    """Fit `steps` + 1 steps and return images per second after the first."""
    import keras

    times: list[float] = []

    class StepTimer(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if logs and "loss" in logs:
                float(logs["loss"])  # waits for the GPU to finish the step
            times.append(time.perf_counter())

    model.fit(dataset, steps_per_epoch=steps + 1, epochs=1, verbose=0, callbacks=[StepTimer()])
    return batch_size * (len(times) - 1) / (times[-1] - times[0])


def main() -> None:
    arguments = parse_arguments()
    load = common.LoadLog()
    facts = common.machine_facts()
    common.print_header("GPU throughput", vars(arguments), facts)
    if not facts["gpus"]:
        if not arguments.allow_cpu:
            print("No GPU found: TensorFlow lists no GPU device. Nothing was measured. "
                  "Run this script on a machine with an NVIDIA GPU, or pass --allow-cpu for a smoke test.")
            return
        print("No GPU found: running a 2-step smoke test on the CPU (--allow-cpu); its figures mean nothing.")
        arguments.steps, arguments.repetitions = 2, 1
        arguments.batch_sizes = arguments.batch_sizes[:1]
        arguments.switch_batch = arguments.batch_sizes[0]
        arguments.photos = min(arguments.photos, 2 * arguments.batch_sizes[0] * (arguments.steps + 1))

    import keras

    size = arguments.image_size
    rows = []
    results = []
    with tempfile.TemporaryDirectory(prefix="agetune-bench-gpu-") as workspace:
        frame, source = photo_frame(arguments, Path(workspace))
        print(f"photos for agetune's pipeline: {len(frame)} from {source}")
        # (batch, mixed precision, XLA requested, baseline shifts, feeds)
        configurations = [(batch, True, True, True, ("memory", "agetune")) for batch in arguments.batch_sizes]
        if arguments.switch_batch:
            configurations += [(arguments.switch_batch, True, False, True, ("memory",)),
                               (arguments.switch_batch, False, False, True, ("memory",)),
                               (arguments.switch_batch, True, True, False, ("memory",))]
        for batch, mixed_precision, xla, shifts, feeds in configurations:
            label = "mixed precision" if mixed_precision else "float32"
            augmentation = "flip, shifts" if shifts else "flip only"
            keras.backend.clear_session()
            started = time.perf_counter()
            model = build_model(size, mixed_precision, xla, shifts)
            # Keras turns XLA off, with a warning, when a layer does not support it.
            xla_state = "off"
            if xla:
                xla_state = "on" if model.jit_compile else "off (Keras: a layer without XLA support)"
            datasets = {"memory": memory_dataset(size, batch, count=8 * batch)}
            if "agetune" in feeds:
                datasets["agetune"] = pipeline_dataset(frame, size, batch)
            # The first fit compiles; its rate is not kept.
            train_rate(model, datasets["memory"], 2, batch)
            compile_seconds = time.perf_counter() - started
            rates: dict[str, list[float]] = {feed: [] for feed in feeds}
            for _ in range(arguments.repetitions):
                for feed in feeds:
                    rates[feed].append(train_rate(model, datasets[feed], arguments.steps, batch))
            for feed in feeds:
                rate = common.median(rates[feed])
                limit = common.median(rates["memory"])
                rows.append([batch, label, xla_state, augmentation, feed, rate, rate / limit, compile_seconds])
                results.append({"batch": batch, "precision": label, "xla_requested": xla, "xla": xla_state,
                                "augmentation": augmentation, "feed": feed, "images_per_second": rates[feed],
                                "compile_seconds": compile_seconds})
                print(f"  batch {batch}, {label}, XLA {xla_state}, {augmentation}, {feed}: {rate:.0f} images/s",
                      flush=True)
    load.finish()
    keras.mixed_precision.set_global_policy("float32")

    print()
    print(f"Training ResNet50 at {size} px, {arguments.steps} timed steps per repetition, "
          f"{arguments.repetitions} repetitions per feed, interleaved")
    print(common.format_table(["batch", "precision", "XLA", "augmentation", "feed", "images/s (median)",
                               "ratio to memory", "build + compile s"], rows))
    print()
    print("Reference figures (other code and machines, see the docstring):")
    for name, value in REFERENCES:
        print(f"  {value:7.0f} images/s  {name}")
    for line in load.lines():
        print(line)
    common.write_json(arguments.json, {"arguments": vars(arguments), "machine": facts, "load_start": load.start,
                                       "load_end": load.end, "results": results})


if __name__ == "__main__":
    main()
