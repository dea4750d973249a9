"""Benchmark agetune's input pipeline against the compute limit and a study-style Python loader.

Three loaders feed the same compiled ResNet50 (the `baseline` space with
random weights), one after another in interleaved repetitions:

- memory: pre-decoded uint8 images in a `tf.data.Dataset.from_tensor_slices`,
  shuffled, batched and prefetched. Nothing is decoded while training, so
  this is the compute limit of the model on this machine.
- agetune: `tuner.data.make_dataset(training=True, cache="memory")`, after
  one warm-up epoch has filled the cache, which is how every epoch after a
  trial's first one is fed.
- study: a Python generator that opens each JPEG with PIL, converts it to
  RGB, resizes it with nearest-neighbour interpolation and stacks a batch,
  every epoch, in one thread with 10 batches queued. That is what Keras 2's
  `ImageDataGenerator.flow_from_dataframe` did with `fit(workers=1,
  max_queue_size=10)`, minus its augmentation in NumPy, so this loader is
  faster than the study's was.

All three produce the same element spec, so the training step is traced
once. Training speed is the images per second between the end of the first
and of the last step of a repetition. Each round runs every loader once, in
an order that rotates from round to round so that a change in the
background load does not always favour the same loader. The ratio to the
compute limit is the median over rounds of each round's ratio.

The second table times the input stage alone, iterating each dataset with no
model: agetune's first epoch (decoding, with the cache filling), agetune's
later epochs (from the cache) and the study loader.

    .venv/bin/python benchmarks/input_pipeline.py --image-size 64
    .venv/bin/python benchmarks/input_pipeline.py --image-size 224
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

import common

LOADERS = ("memory", "agetune", "study")
# Keras 2's fit() queued this many batches from a generator by default (max_queue_size).
STUDY_QUEUE_BATCHES = 10


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-size", type=int, default=64, help="input size in pixels (default 64)")
    parser.add_argument("--photos", type=int, default=None,
                        help="real photos to use (default 1024 up to 96 px, else 256)")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size (default 32, as in the study)")
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps per repetition (default 12 up to 96 px, else 3)")
    parser.add_argument("--repetitions", type=int, default=None,
                        help="rounds, each running every loader once (default 6 up to 96 px, else 2)")
    parser.add_argument("--input-batches", type=int, default=None,
                        help="batches per repetition of the input-only test (default two epochs)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer photos, steps and repetitions")
    parser.add_argument("--faces", type=str, default=str(common.FACES_ROOT), help="folder of the face dataset")
    parser.add_argument("--json", type=str, default=None, help="also write the results to this JSON file")
    arguments = parser.parse_args()

    small = arguments.image_size <= 96
    if arguments.photos is None:
        arguments.photos = 1024 if small else 256
    if arguments.steps is None:
        arguments.steps = 12 if small else 3
    if arguments.repetitions is None:
        arguments.repetitions = 6 if small else 2
    if arguments.quick:
        arguments.photos = min(arguments.photos, 256)
        arguments.steps = min(arguments.steps, 6 if small else 3)
        arguments.repetitions = min(arguments.repetitions, 2)
    # Whole batches only, so that every step has the same number of images.
    arguments.photos -= arguments.photos % arguments.batch_size
    if arguments.photos < arguments.batch_size:
        parser.error("--photos must be at least --batch-size")
    if arguments.steps < 2:
        parser.error("--steps must be at least 2: the first step of a repetition is not timed")
    if arguments.input_batches is None:
        arguments.input_batches = 2 * arguments.photos // arguments.batch_size
    return arguments


def study_batches(paths: np.ndarray, ages: np.ndarray, image_size: int, batch_size: int,
                  seed: int) -> Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]:
    """Return a generator function that decodes JPEGs with PIL every epoch, like flow_from_dataframe."""
    from PIL import Image

    def generate() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        rng = np.random.default_rng(seed)
        for _ in itertools.count():
            order = rng.permutation(len(paths))
            for start in range(0, len(order), batch_size):
                chosen = order[start:start + batch_size]
                images = np.empty((len(chosen), image_size, image_size, 3), dtype=np.uint8)
                for row, index in enumerate(chosen):
                    with Image.open(paths[index]) as photo:
                        photo = photo.convert("RGB")
                        if photo.size != (image_size, image_size):
                            # keras.utils.load_img resizes with "nearest" by default.
                            photo = photo.resize((image_size, image_size), Image.NEAREST)
                        images[row] = np.asarray(photo)
                yield images, ages[chosen]

    return generate


def build_datasets(frame, image_size: int, batch_size: int):
    """Return the three repeating training datasets by loader name, and seconds of the agetune warm-up epoch."""
    import tensorflow as tf

    from tuner.data import make_dataset

    paths = frame["path"].astype(str).to_numpy()
    ages = frame["age"].to_numpy(dtype=np.float32)
    signature = (tf.TensorSpec((None, image_size, image_size, 3), tf.uint8), tf.TensorSpec((None,), tf.float32))

    # The compute limit gets exactly agetune's pixels, decoded once up front.
    decoded = make_dataset(frame, image_size, batch_size, training=False, cache=None)
    images = np.concatenate([batch.numpy() for batch, _ in decoded])
    memory = (tf.data.Dataset.from_tensor_slices((images, ages))
              .shuffle(len(images), seed=0, reshuffle_each_iteration=True)
              .batch(batch_size).prefetch(tf.data.AUTOTUNE))

    agetune = make_dataset(frame, image_size, batch_size, training=True, cache="memory", seed=0)
    started = time.perf_counter()
    for _ in agetune:
        pass
    warm_up_seconds = time.perf_counter() - started

    study = tf.data.Dataset.from_generator(study_batches(paths, ages, image_size, batch_size, seed=0),
                                           output_signature=signature).prefetch(STUDY_QUEUE_BATCHES)
    datasets = {"memory": memory.repeat(), "agetune": agetune.repeat(), "study": study}
    for name, dataset in datasets.items():
        if dataset.element_spec != signature:
            raise RuntimeError(f"loader {name} yields {dataset.element_spec}, expected {signature}")
    return datasets, warm_up_seconds


def build_model(image_size: int):
    import keras_tuner

    from tuner.hypermodel import AgeHyperModel
    from tuner.space import load_space

    space = load_space("baseline").with_overrides({"data.image_size": image_size, "backbone.weights": "none"})
    return AgeHyperModel(space, weights_path=None, seed=0).build(keras_tuner.HyperParameters())


def make_step_timer():
    import keras

    class StepTimer(keras.callbacks.Callback):
        """Record the time at the end of every training step."""

        def on_train_begin(self, logs=None):
            self.times: list[float] = []

        def on_train_batch_end(self, batch, logs=None):
            # Reading the loss waits for the step, in case the step runs asynchronously.
            if logs and "loss" in logs:
                float(logs["loss"])
            self.times.append(time.perf_counter())

    return StepTimer()


def train_rate(model, dataset, steps: int, batch_size: int) -> float:
    """Fit `steps` steps and return images per second from the end of step 1 to the end of the last."""
    timer = make_step_timer()
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[timer])
    return batch_size * (len(timer.times) - 1) / (timer.times[-1] - timer.times[0])


def input_rate(dataset, batches: int) -> float:
    """Iterate `batches` batches without a model and return images per second, the first batch not timed."""
    iterator = iter(dataset)
    next(iterator)
    images = 0
    started = time.perf_counter()
    for _ in range(batches - 1):
        batch, _ = next(iterator)
        images += int(batch.shape[0])
    return images / (time.perf_counter() - started)


def first_epoch_rate(frame, image_size: int, batch_size: int) -> float:
    """Return images per second of agetune's first epoch, which decodes every photo and fills the cache."""
    from tuner.data import make_dataset

    dataset = make_dataset(frame, image_size, batch_size, training=True, cache="memory", seed=1)
    started = time.perf_counter()
    images = sum(int(batch.shape[0]) for batch, _ in dataset)
    return images / (time.perf_counter() - started)


def rotated(names: tuple[str, ...] | list[str], round_index: int) -> list[str]:
    """Return `names` rotated left by `round_index`: A B C, then B C A, then C A B."""
    shift = round_index % len(names)
    return list(names[shift:]) + list(names[:shift])


def round_ratios(rates: dict[str, list[float]], reference: str) -> dict[str, list[float]]:
    """Return each loader's rate divided by the reference's rate of the same round."""
    return {name: [rate / base for rate, base in zip(values, rates[reference])] for name, values in rates.items()}


def main() -> None:
    arguments = parse_arguments()
    load = common.LoadLog()
    facts = common.machine_facts()
    common.print_header("input pipeline", vars(arguments), facts)
    frame = common.faces_subset(arguments.photos, seed=0, root=Path(arguments.faces))
    size, batch = arguments.image_size, arguments.batch_size

    datasets, warm_up_seconds = build_datasets(frame, size, batch)
    print(f"agetune warm-up epoch (decode {len(frame)} photos, fill the cache): {warm_up_seconds:.1f} s")

    started = time.perf_counter()
    model = build_model(size)
    build_seconds = time.perf_counter() - started
    started = time.perf_counter()
    # Two steps trace the training step; the traced function serves all three loaders.
    model.fit(datasets["memory"], steps_per_epoch=2, epochs=1, verbose=0)
    trace_seconds = time.perf_counter() - started
    print(f"model build {build_seconds:.1f} s, first fit of 2 steps (tracing) {trace_seconds:.1f} s")

    training: dict[str, list[float]] = {name: [] for name in LOADERS}
    for repetition in range(arguments.repetitions):
        for name in rotated(LOADERS, repetition):
            rate = train_rate(model, datasets[name], arguments.steps, batch)
            training[name].append(rate)
            print(f"  training repetition {repetition + 1} {name}: {rate:.1f} images/s", flush=True)

    input_only: dict[str, list[float]] = {"agetune first epoch": [], "agetune cached": [], "study": []}
    measure = {
        "agetune first epoch": lambda: first_epoch_rate(frame, size, batch),
        "agetune cached": lambda: input_rate(datasets["agetune"], arguments.input_batches),
        "study": lambda: input_rate(datasets["study"], arguments.input_batches),
    }
    for repetition in range(arguments.repetitions):
        for name in rotated(list(measure), repetition):
            input_only[name].append(measure[name]())
        print(f"  input repetition {repetition + 1}: "
              + ", ".join(f"{name} {rates[-1]:.0f}" for name, rates in input_only.items()) + " images/s", flush=True)
    load.finish()

    ratios = round_ratios(training, "memory")
    rows = [[name, common.median(training[name]), " ".join(f"{rate:.1f}" for rate in training[name]),
             common.median(ratios[name]), " ".join(f"{ratio:.2f}" for ratio in ratios[name])] for name in LOADERS]
    print()
    print(f"Training ResNet50 at {size} px, batch {batch}, {len(frame)} photos, {arguments.steps} steps "
          f"per repetition (first untimed), {arguments.repetitions} rounds, order rotating")
    print(common.format_table(["loader", "images/s (median)", "rounds", "ratio to memory (median)",
                               "ratio per round"], rows))

    ratios = round_ratios(input_only, "study")
    rows = [[name, common.median(rates), " ".join(f"{rate:.0f}" for rate in rates), common.median(ratios[name]),
             " ".join(f"{ratio:.2f}" for ratio in ratios[name])] for name, rates in input_only.items()]
    print()
    print("Input stage alone (no model)")
    print(common.format_table(["input stage", "images/s (median)", "rounds", "ratio to study (median)",
                               "ratio per round"], rows))
    print()
    for line in load.lines():
        print(line)

    common.write_json(arguments.json, {
        "arguments": vars(arguments), "machine": facts, "load_start": load.start, "load_end": load.end,
        "warm_up_seconds": warm_up_seconds, "build_seconds": build_seconds, "trace_seconds": trace_seconds,
        "training_images_per_second": training, "input_images_per_second": input_only,
    })


if __name__ == "__main__":
    main()
