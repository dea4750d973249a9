"""The ResNet50 age regressor as a Keras Tuner HyperModel.

The model takes raw uint8 RGB images and does everything else itself:
augmentation (training only), ResNet50's own input preprocessing, the
backbone, global average pooling and the head. Keeping preprocessing inside
the model means an exported model needs nothing but pixels, and keeping
augmentation inside it means it runs on the GPU and can be searched.
"""

from __future__ import annotations

import logging
import os
import socket
import warnings
from pathlib import Path

import keras
import keras_tuner

from tuner.errors import WeightsError, first_line
from tuner.logs import is_first_start
from tuner.options import weights_file
from tuner.space import SearchSpace

log = logging.getLogger(__name__)

# Keras downloads the ImageNet weights of ResNet50 without its top from here
# (keras/src/applications/resnet.py, Keras 3.x) into ~/.keras/models/.
IMAGENET_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
IMAGENET_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/" + IMAGENET_FILE
IMAGENET_MD5 = "4d473c1dd8becc155b73f8504c6f6626"
DOWNLOAD_TIMEOUT_SECONDS = 20


def keras_cache_dir() -> Path:
    """Return the folder where Keras keeps downloaded model weights."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def resolve_weights(weights: str, verify: bool = True) -> str | None:
    """Turn the `backbone.weights` setting into a local file path, or None for random weights.

    Runs before any training, so that a missing file or an offline machine
    fails at once instead of in the first trial of every worker. With
    `verify`, a weights file is also loaded into a ResNet50 backbone once.
    """
    if weights == "none":
        return None
    if weights != "imagenet":
        path = str(weights_file(weights))
        if verify:
            check_weights_load(path)
        return path

    cached = keras_cache_dir() / IMAGENET_FILE
    if cached.is_file():
        return str(cached)
    how_to = (f"Download {IMAGENET_URL} on a machine with internet access, then pass --weights PATH "
              f"or copy it to {cached}; or pass --weights none to train from random weights.")
    if os.environ.get("AGETUNE_OFFLINE") == "1":
        raise WeightsError(f"ImageNet weights for ResNet50 are not in {cached.parent} and AGETUNE_OFFLINE=1. {how_to}")
    log.info("Downloading the ImageNet weights of ResNet50 to %s", cached.parent)
    previous_timeout = socket.getdefaulttimeout()
    # urllib waits for the operating system's TCP timeout by default, minutes
    # on a machine without a route out; an offline machine must fail at once.
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_SECONDS)
    try:
        path = keras.utils.get_file(IMAGENET_FILE, IMAGENET_URL, cache_subdir="models", file_hash=IMAGENET_MD5)
    except Exception as error:  # noqa: BLE001 - get_file wraps every network failure in a bare Exception
        raise WeightsError(f"could not download the ImageNet weights for ResNet50 ({error}). "
                           f"This machine may be offline. {how_to}") from None
    finally:
        socket.setdefaulttimeout(previous_timeout)
    return str(path)


def check_weights_load(path: str) -> None:
    """Load a weights file into a ResNet50 backbone; raise `WeightsError` naming the file if it does not fit.

    A file of another model would otherwise fail in every trial, and each
    failure would name only a layer, not the file.
    """
    # The input size does not matter: a backbone without its top has the same weights at any size.
    backbone = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3))
    try:
        # Keras warns about each part of a wrong file before it raises; the error alone names the problem.
        with warnings.catch_warnings(record=True):
            backbone.load_weights(path)
    except (OSError, ValueError, KeyError) as error:
        reason = first_line(str(error)) or type(error).__name__
        raise WeightsError(f"cannot load the backbone weights file {path}: {reason}. Pass --weights with the path "
                           "to a ResNet50 weights file without the top (.h5), 'imagenet' or 'none'.") from None
    finally:
        del backbone
        keras.backend.clear_session()


# A process that a supervisor started before has shown the warning already.
_xla_warned = not is_first_start()


def _warn_xla_off_once() -> None:
    # Keras 3.15 turns XLA off for the whole model, with a warning of its own,
    # when one layer cannot compile: RandomTranslation, RandomRotation and
    # RandomZoom cannot, so a trial that shifts, rotates or zooms runs without it.
    global _xla_warned
    if not _xla_warned:
        log.warning("XLA was requested but Keras compiled this model without it: one of its augmentation layers "
                    "(shift, rotation or zoom) does not support XLA.")
        _xla_warned = True


def build_augmentation(space: SearchSpace, hp: keras_tuner.HyperParameters, seed: int) -> list[keras.layers.Layer]:
    """Return the augmentation layers of a trial; each is active only while training."""
    layers: list[keras.layers.Layer] = []
    if space.value(hp, "augmentation.horizontal_flip"):
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed, name="flip"))
    width = space.value(hp, "augmentation.width_shift")
    height = space.value(hp, "augmentation.height_shift")
    if width or height:
        # fill_mode "nearest" is what Keras' ImageDataGenerator, which the study used, fills with.
        layers.append(keras.layers.RandomTranslation(height, width, fill_mode="nearest", seed=seed, name="shift"))
    rotation = space.value(hp, "augmentation.rotation")
    if rotation:
        layers.append(keras.layers.RandomRotation(rotation, fill_mode="nearest", seed=seed, name="rotation"))
    zoom = space.value(hp, "augmentation.zoom")
    if zoom:
        layers.append(keras.layers.RandomZoom(zoom, fill_mode="nearest", seed=seed, name="zoom"))
    contrast = space.value(hp, "augmentation.contrast")
    if contrast:
        layers.append(keras.layers.RandomContrast(contrast, seed=seed, name="contrast"))
    return layers


def freeze_backbone(backbone: keras.Model, trainable_from: str, train_batchnorm: bool) -> None:
    """Freeze the backbone's layers before the stage `trainable_from` ("all", "conv2" … "conv5", "none")."""
    if trainable_from == "none":
        backbone.trainable = False
        return
    trainable = trainable_from == "all"
    for layer in backbone.layers:
        if not trainable and layer.name.startswith(f"{trainable_from}_"):
            trainable = True
        layer.trainable = trainable
        if isinstance(layer, keras.layers.BatchNormalization) and not train_batchnorm:
            # A frozen BatchNormalization layer runs in inference mode in
            # Keras 3, with the moving statistics it was pretrained with. Batch
            # statistics of 32 faces are noisy, and updating them would shift
            # every activation after the layer, undoing the pretrained
            # features faster than the small learning rate can adapt.
            layer.trainable = False


def build_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """Return the optimizer `name` at `learning_rate`."""
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate=learning_rate)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.9, nesterov=True)
    return keras.optimizers.Adam(learning_rate=learning_rate)


def build_loss(name: str) -> keras.losses.Loss:
    """Return the loss `name`; Huber's delta is in years."""
    if name == "mse":
        return keras.losses.MeanSquaredError(name="mse")
    if name == "huber":
        return keras.losses.Huber(delta=5.0, name="huber")
    return keras.losses.MeanAbsoluteError(name="mae")


class AgeHyperModel(keras_tuner.HyperModel):
    """Build ResNet50 age regressors from a search space, one per trial."""

    def __init__(self, space: SearchSpace, weights_path: str | None, mixed_precision: bool = False,
                 jit_compile: bool = False, seed: int = 0) -> None:
        super().__init__(name="resnet50_age")
        self.space = space
        self.weights_path = weights_path
        self.mixed_precision = mixed_precision
        self.jit_compile = jit_compile
        self.seed = seed

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        """Build and compile the model of one trial."""
        space = self.space
        # The policy is process-wide; set it on every build so that one trial
        # never inherits another's.
        keras.mixed_precision.set_global_policy("mixed_float16" if self.mixed_precision else "float32")
        size = space.setting("data.image_size")

        inputs = keras.Input((size, size, 3), dtype="uint8", name="image")
        x = keras.ops.cast(inputs, "float32")
        for layer in build_augmentation(space, hp, self.seed):
            x = layer(x)
        # Caffe-style preprocessing (BGR, ImageNet mean subtracted), the input
        # the ResNet50 ImageNet weights were trained on.
        x = keras.applications.resnet50.preprocess_input(x)

        backbone = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(size, size, 3),
                                               name="backbone")
        if self.weights_path:
            backbone.load_weights(self.weights_path)
        freeze_backbone(backbone, space.value(hp, "backbone.trainable_from"),
                        space.value(hp, "backbone.train_batchnorm"))
        x = backbone(x)
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)

        for index in range(space.value(hp, "head.dense_layers")):
            units = space.value(hp, "head.units")
            activation = space.value(hp, "head.activation")
            dropout = space.value(hp, "head.dropout")
            x = keras.layers.Dense(units, activation=activation, name=f"head_dense_{index + 1}")(x)
            if dropout:
                x = keras.layers.Dropout(dropout, seed=self.seed, name=f"head_dropout_{index + 1}")(x)
        # The output stays float32 under mixed precision: float16 MAE on ages
        # would round away fractions of a year.
        outputs = keras.layers.Dense(1, activation=space.value(hp, "head.output_activation"), dtype="float32",
                                     name="age")(x)
        model = keras.Model(inputs, outputs, name="resnet50_age")

        model.compile(
            optimizer=build_optimizer(space.value(hp, "training.optimizer"),
                                      space.value(hp, "training.learning_rate")),
            loss=build_loss(space.value(hp, "training.loss")),
            metrics=[keras.metrics.MeanAbsoluteError(name="mae"),
                     keras.metrics.MeanAbsolutePercentageError(name="mape")],
            jit_compile=self.jit_compile,
        )
        if self.jit_compile and not model.jit_compile:
            _warn_xla_off_once()
        # Creating the optimizer's slots now, not inside the first training
        # step, spares TensorFlow a second trace of that step: about a third
        # of a trial's start-up time (47 s against 69 s at 32 px on 2 CPU cores).
        model.optimizer.build(model.trainable_variables)
        return model
