"""The ResNet50 HyperModel: the study's baseline exactly, fine-tuning depth, head, augmentation, weights."""

import os
import time
from pathlib import Path

import keras
import keras_tuner
import numpy as np
import pytest

from tuner.errors import WeightsError
from tuner.hypermodel import IMAGENET_FILE, AgeHyperModel, freeze_backbone, resolve_weights
from tuner.space import load_space


@pytest.fixture(autouse=True)
def float32_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


def build(space_name: str = "baseline", **overrides) -> tuple[keras.Model, keras_tuner.HyperParameters]:
    space = load_space(space_name).with_overrides({"backbone.weights": "none", **overrides})
    hp = keras_tuner.HyperParameters()
    return AgeHyperModel(space, None).build(hp), hp


def test_baseline_is_the_study_model() -> None:
    model, hp = build()
    assert hp.values == {}
    assert model.input_shape == (None, 224, 224, 3)
    assert model.inputs[0].dtype == "uint8"
    backbone = model.get_layer("backbone")
    assert backbone.output_shape == (None, 7, 7, 2048)
    assert backbone.count_params() == keras.applications.ResNet50(include_top=False, weights=None).count_params()
    assert all(layer.trainable for layer in backbone.layers)
    flip = model.get_layer("flip")
    assert isinstance(flip, keras.layers.RandomFlip)
    assert flip.mode == "horizontal"
    shift = model.get_layer("shift")
    assert isinstance(shift, keras.layers.RandomTranslation)
    assert (shift.height_factor, shift.width_factor) == (0.2, 0.2)
    layer_names = [layer.name for layer in model.layers]
    for absent in ("rotation", "zoom", "contrast", "head_dense_1"):
        assert absent not in layer_names
    assert isinstance(model.get_layer("pool"), keras.layers.GlobalAveragePooling2D)
    head = model.layers[-1]
    assert head.name == "age"
    assert head.units == 1
    assert head.activation is keras.activations.relu
    assert model.layers[-2] is model.get_layer("pool")
    assert isinstance(model.loss, keras.losses.MeanAbsoluteError)
    metrics = model.get_compile_config()["metrics"]
    assert [(metric["class_name"], metric["config"]["name"]) for metric in metrics] == [
        ("MeanAbsoluteError", "mae"), ("MeanAbsolutePercentageError", "mape")]
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-4)


def test_partial_fine_tuning_freezes_early_stages() -> None:
    backbone = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3))
    freeze_backbone(backbone, "conv5", train_batchnorm=False)
    first_conv5 = next(index for index, layer in enumerate(backbone.layers) if layer.name.startswith("conv5_"))
    assert not any(layer.trainable for layer in backbone.layers[:first_conv5])
    conv5 = backbone.layers[first_conv5:]
    assert all(layer.trainable for layer in conv5 if not isinstance(layer, keras.layers.BatchNormalization))
    assert not any(layer.trainable for layer in conv5 if isinstance(layer, keras.layers.BatchNormalization))
    trainable_names = {variable.path.split("/")[0] for variable in backbone.trainable_variables}
    assert trainable_names == {layer.name for layer in conv5
                               if layer.weights and not isinstance(layer, keras.layers.BatchNormalization)}


def test_frozen_batchnorm_runs_in_inference_mode() -> None:
    backbone = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3))
    freeze_backbone(backbone, "conv5", train_batchnorm=False)
    batchnorm = backbone.get_layer("conv5_block1_1_bn")
    before = batchnorm.moving_mean.numpy().copy()
    batchnorm(np.random.default_rng(0).normal(5.0, 1.0, (4, 2, 2, 512)).astype("float32"), training=True)
    np.testing.assert_array_equal(batchnorm.moving_mean.numpy(), before)


def test_frozen_backbone_and_full_training() -> None:
    backbone = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3))
    freeze_backbone(backbone, "none", train_batchnorm=True)
    assert backbone.trainable_variables == []
    freeze_backbone(backbone, "all", train_batchnorm=True)
    backbone.trainable = True
    assert len(backbone.trainable_variables) == 212


def test_head_layers_and_dropout(tmp_path: Path) -> None:
    space_path = tmp_path / "head.toml"
    space_path.write_text("[data]\nimage_size = 32\n[backbone]\nweights = 'none'\n"
                          "[head]\ndense_layers = 2\nunits = 64\ndropout = 0.25\nactivation = 'gelu'\n"
                          "output_activation = 'softplus'\n", encoding="utf-8")
    model = AgeHyperModel(load_space(space_path), None).build(keras_tuner.HyperParameters())
    for index in (1, 2):
        dense = model.get_layer(f"head_dense_{index}")
        assert dense.units == 64
        assert dense.activation is keras.activations.gelu
        assert model.get_layer(f"head_dropout_{index}").rate == 0.25
    assert model.get_layer("age").activation is keras.activations.softplus


def test_augmentation_only_while_training() -> None:
    model, _ = build(**{"data.image_size": 32, "augmentation.rotation": 0.1, "augmentation.zoom": 0.2,
                        "augmentation.contrast": 0.3})
    images = np.random.default_rng(1).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    first = model(images, training=False).numpy()
    second = model(images, training=False).numpy()
    np.testing.assert_array_equal(first, second)
    for name in ("flip", "shift", "rotation", "zoom", "contrast"):
        assert model.get_layer(name) is not None


def test_mixed_precision_keeps_float32_output() -> None:
    space = load_space("baseline").with_overrides({"backbone.weights": "none", "data.image_size": 32})
    model = AgeHyperModel(space, None, mixed_precision=True).build(keras_tuner.HyperParameters())
    assert model.get_layer("pool").compute_dtype == "float16"
    assert model.get_layer("age").compute_dtype == "float32"
    assert model.outputs[0].dtype == "float32"
    model_again = AgeHyperModel(space, None, mixed_precision=False).build(keras_tuner.HyperParameters())
    assert model_again.get_layer("pool").compute_dtype == "float32"


def test_searchable_values_come_from_the_trial() -> None:
    space = load_space("default").with_overrides({"backbone.weights": "none", "data.image_size": 32})
    hp = keras_tuner.HyperParameters()
    hp.values.update({"training.learning_rate": 3e-4, "training.optimizer": "adamw", "head.dense_layers": 1,
                      "head.units": 128, "backbone.trainable_from": "conv4", "training.loss": "huber"})
    model = AgeHyperModel(space, None).build(hp)
    assert isinstance(model.optimizer, keras.optimizers.AdamW)
    assert float(model.optimizer.learning_rate) == pytest.approx(3e-4)
    assert model.get_layer("head_dense_1").units == 128
    assert isinstance(model.loss, keras.losses.Huber)
    backbone = model.get_layer("backbone")
    assert not backbone.get_layer("conv3_block4_out").trainable
    assert backbone.get_layer("conv4_block1_1_conv").trainable


def test_weights_none_and_missing_file(tmp_path: Path) -> None:
    assert resolve_weights("none") is None
    with pytest.raises(WeightsError) as raised:
        resolve_weights(str(tmp_path / "absent.h5"))
    assert f"backbone weights file {tmp_path / 'absent.h5'} not found" in str(raised.value)
    assert "--weights" in str(raised.value)


def test_local_weights_file_is_loaded(tmp_path: Path) -> None:
    source = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3))
    weights_path = tmp_path / "resnet50.weights.h5"
    source.save_weights(weights_path)
    assert resolve_weights(str(weights_path)) == str(weights_path.resolve())
    space = load_space("baseline").with_overrides({"backbone.weights": str(weights_path), "data.image_size": 32})
    model = AgeHyperModel(space, str(weights_path)).build(keras_tuner.HyperParameters())
    loaded = model.get_layer("backbone").get_layer("conv1_conv").kernel.numpy()
    np.testing.assert_array_equal(loaded, source.get_layer("conv1_conv").kernel.numpy())


def test_weights_file_that_is_not_hdf5(tmp_path: Path) -> None:
    path = tmp_path / "notes.h5"
    path.write_text("not weights", encoding="utf-8")

    with pytest.raises(WeightsError) as raised:
        resolve_weights(str(path))

    assert str(raised.value) == (f"backbone weights file {path} is not an HDF5 (.h5) file. Pass --weights with the "
                                 "path to a ResNet50 weights file without the top (.h5), 'imagenet' or 'none'.")


def test_weights_file_of_another_model(tmp_path: Path) -> None:
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    path = tmp_path / "other.weights.h5"
    other.save_weights(path)

    with pytest.raises(WeightsError) as raised:
        resolve_weights(str(path))

    assert str(raised.value).startswith(f"cannot load the backbone weights file {path.resolve()}: ")
    # Processes started by one that checked the file skip the load.
    assert resolve_weights(str(path), verify=False) == str(path.resolve())


def test_imagenet_offline_fails_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv("AGETUNE_OFFLINE", "1")

    def no_download(*args, **kwargs):
        raise AssertionError("AGETUNE_OFFLINE=1 must not try the network")

    monkeypatch.setattr(keras.utils, "get_file", no_download)
    started = time.monotonic()
    with pytest.raises(WeightsError) as raised:
        resolve_weights("imagenet")
    assert time.monotonic() - started < 1.0
    message = str(raised.value)
    assert f"not in {tmp_path / 'models'} and AGETUNE_OFFLINE=1" in message
    assert "pass --weights PATH" in message
    assert "--weights none" in message


def test_imagenet_download_failure_is_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.delenv("AGETUNE_OFFLINE", raising=False)

    def failing_download(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -3] "
                        "Temporary failure in name resolution")

    monkeypatch.setattr(keras.utils, "get_file", failing_download)
    with pytest.raises(WeightsError) as raised:
        resolve_weights("imagenet")
    message = str(raised.value)
    assert message.startswith("could not download the ImageNet weights for ResNet50 (URL fetch failure")
    assert "This machine may be offline." in message
    assert str(tmp_path / "models" / IMAGENET_FILE) in message


def test_imagenet_from_keras_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    cached = tmp_path / "models" / IMAGENET_FILE
    cached.parent.mkdir()
    cached.write_bytes(b"stand-in: only the path is checked here")
    assert resolve_weights("imagenet") == str(cached)
    assert os.environ["KERAS_HOME"] == str(tmp_path)


def test_xla_off_with_shift_is_logged(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    import tuner.hypermodel

    monkeypatch.setattr(tuner.hypermodel, "_xla_warned", False)
    space = load_space("baseline").with_overrides({"backbone.weights": "none", "data.image_size": 32})
    with caplog.at_level("WARNING", logger="tuner.hypermodel"):
        shifted = AgeHyperModel(space, None, jit_compile=True).build(keras_tuner.HyperParameters())
    assert shifted.jit_compile is False
    assert "XLA was requested but Keras compiled this model without it" in caplog.text

    flip_only = space.with_overrides({"augmentation.width_shift": 0.0, "augmentation.height_shift": 0.0})
    model = AgeHyperModel(flip_only, None, jit_compile=True).build(keras_tuner.HyperParameters())
    assert model.jit_compile is True
