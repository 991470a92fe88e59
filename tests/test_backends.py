"""Layers and builders on whichever Keras backend runs the tests (CI runs this file under
TensorFlow, JAX and PyTorch): Keras's own custom-layer harness, a preset of every family
built, trained and saved, `.keras` files moving between backends. No TensorFlow import."""

import importlib.util
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import FAMILIES, assert_same_outputs, run_probe, shrunk
from keras.src.testing import TestCase

import keras_residual as kr

BACKEND = keras.config.backend()
CROSS_BACKEND_ATOL = 1e-4  # the same .keras file's outputs on two backends

# name: (layer class, constructor arguments, input shape(s), expected output shape)
LAYERS = {
    "identity": (kr.IdentityShortcut, {}, (2, 8, 8, 8), (2, 8, 8, 8)),
    "identity_pad": (kr.IdentityShortcut, {"filters": 16, "strides": 2, "mode": "pad"},
                     (2, 8, 8, 8), (2, 4, 4, 16)),
    "projection": (kr.ProjectionShortcut, {"filters": 16, "strides": 2}, (2, 8, 8, 8),
                   (2, 4, 4, 16)),
    "projection_avg_down": (kr.ProjectionShortcut, {"filters": 16, "strides": 2, "avg_down": True},
                            (2, 8, 8, 8), (2, 4, 4, 16)),
    "gated": (kr.GatedShortcut, {"gate_bias": -1.0}, [(2, 8, 8, 8), (2, 8, 8, 8)], (2, 8, 8, 8)),
    "squeeze_excite": (kr.SqueezeExcite, {"ratio": 0.25}, (2, 8, 8, 8), (2, 8, 8, 8)),
    "drop_path": (kr.DropPath, {"rate": 0.2, "seed": 1}, (2, 8, 8, 8), (2, 8, 8, 8)),
    "basic": (kr.BasicBlock, {"filters": 8}, (2, 8, 8, 8), (2, 8, 8, 8)),
    "basic_a": (kr.BasicBlock, {"filters": 16, "strides": 2, "shortcut": "A"}, (2, 8, 8, 8),
                (2, 4, 4, 16)),
    "basic_c_preact": (kr.BasicBlock, {"filters": 8, "shortcut": "C", "preact": True},
                       (2, 8, 8, 8), (2, 8, 8, 8)),
    "basic_gated": (kr.BasicBlock, {"filters": 16, "strides": 2, "shortcut": "gated"},
                    (2, 8, 8, 8), (2, 4, 4, 16)),
    "basic_plain_se_drop_path": (kr.BasicBlock, {"filters": 8, "shortcut": "none",
                                 "se_ratio": 0.25, "drop_path_rate": 0.1, "dropout_rate": 0.2},
                                 (2, 8, 8, 8), (2, 8, 8, 8)),
    "bottleneck": (kr.BottleneckBlock, {"filters": 4, "strides": 2}, (2, 8, 8, 8), (2, 4, 4, 16)),
    "resnext": (kr.BottleneckBlock, {"filters": 8, "groups": 4, "base_width": 16},
                (2, 8, 8, 8), (2, 8, 8, 32)),
    "resnet_d": (kr.BottleneckBlock, {"filters": 4, "strides": 2, "avg_down": True,
                 "use_bias": True}, (2, 8, 8, 8), (2, 4, 4, 16)),
    "dense_block": (kr.DenseBlock, {"num_layers": 2, "growth_rate": 4}, (2, 8, 8, 8),
                    (2, 8, 8, 16)),
    "transition": (kr.Transition, {"compression": 0.5}, (2, 8, 8, 8), (2, 4, 4, 4)),
    "patch_whitening": (kr.PatchWhitening, {"kernel_size": 2}, (2, 8, 8, 3), (2, 7, 7, 24)),
    "fused_batch_norm": (kr.FusedBatchNormalization, {"momentum": 0.9}, (2, 8, 8, 8),
                         (2, 8, 8, 8)),
    "resize": (kr.Resize, {"height": 6, "width": 4}, (2, 8, 8, 3), (2, 6, 4, 3)),
    # The same layers on sequences (batch, steps, channels) and volumes.
    "identity_pad_1d": (kr.IdentityShortcut, {"filters": 16, "strides": 2, "mode": "pad"},
                        (2, 9, 8), (2, 5, 16)),
    "identity_norm_1d": (kr.IdentityShortcut, {"norm": True}, (2, 9, 8), (2, 9, 8)),
    "projection_avg_down_1d": (kr.ProjectionShortcut, {"filters": 16, "strides": 2,
                               "avg_down": True}, (2, 8, 8), (2, 4, 16)),
    "gated_1d": (kr.GatedShortcut, {}, [(2, 8, 8), (2, 8, 8)], (2, 8, 8)),
    "squeeze_excite_1d": (kr.SqueezeExcite, {"ratio": 0.25}, (2, 8, 8), (2, 8, 8)),
    "basic_wang_1d": (kr.BasicBlock, {"filters": 16, "kernel_size": (8, 5, 3), "use_bias": True},
                      (2, 12, 3), (2, 12, 16)),
    "basic_a_preact_1d": (kr.BasicBlock, {"filters": 16, "strides": 2, "shortcut": "A",
                          "preact": True, "se_ratio": 0.25, "drop_path_rate": 0.1},
                          (2, 12, 8), (2, 6, 16)),
    "basic_tcn_1d": (kr.BasicBlock, {"filters": 8, "dilation_rate": 2, "causal": True},
                     (2, 12, 4), (2, 12, 8)),
    "bottleneck_1d": (kr.BottleneckBlock, {"filters": 4, "strides": 2, "kernel_size": 5},
                      (2, 12, 8), (2, 6, 16)),
    "fused_batch_norm_1d": (kr.FusedBatchNormalization, {}, (2, 12, 8), (2, 12, 8)),
    "basic_3d": (kr.BasicBlock, {"filters": 8, "strides": 2}, (2, 4, 6, 6, 4), (2, 2, 3, 3, 8)),
    "bottleneck_3d": (kr.BottleneckBlock, {"filters": 2, "strides": 2}, (2, 4, 4, 4, 4),
                      (2, 2, 2, 2, 8)),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_keras_custom_layer_harness(name):
    """keras.src.testing's run_layer_test (what Keras and keras-hub run on their layers):
    config round trip, symbolic and eager calls, a training step, mixed precision."""
    layer_class, arguments, input_shape, output_shape = LAYERS[name]
    harness = TestCase()
    harness.setUp()
    harness.run_layer_test(
        layer_class,
        arguments,
        input_shape=input_shape,
        expected_output_shape=output_shape,
        supports_masking=layer_class in (kr.DropPath, kr.FusedBatchNormalization),
        # The harness's TF training check cannot feed a two-input layer (it passes a list as a
        # tf.data output_signature); BasicBlock(shortcut="gated") trains a GatedShortcut there.
        run_training_check=not (BACKEND == "tensorflow" and isinstance(input_shape, list)),
    )


@pytest.mark.parametrize("name", FAMILIES)
def test_every_preset_family_builds_trains_and_saves(name, tmp_path):
    model = kr.build_network(shrunk(name))
    rng = np.random.default_rng(0)
    x = rng.random((4, 32, 32, 3), dtype="float32")
    y = keras.utils.to_categorical(np.arange(4) % 4, 4)
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    # Two steps of 4 images: batch norm over 2 images of a small map (an ImageNet network's
    # last stage at 32x32) is too few values to normalise by, and can blow up.
    loss = model.fit(x, y, batch_size=4, epochs=2, verbose=0).history["loss"][-1]
    assert np.isfinite(loss)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert_same_outputs(model, loaded, x)


@pytest.mark.slow
def test_a_series_network_and_residual_wrappers_train_and_save(tmp_path):
    """Wang et al.'s ResNet (shrunk) under `Residual`-wrapped LSTM, attention and Dense
    layers: trains, saves, reloads under safe_mode with the same outputs, on this backend."""
    spec = kr.resnet_series_spec((24, 2), 3, width=8).replace(include_top=False)
    inputs = keras.Input((24, 2))
    x = kr.build_network(spec)(inputs)[:, None, :] * keras.ops.ones((1, 6, 1))
    x = kr.Residual(keras.layers.LSTM(16, return_sequences=True), norm="pre")(x)
    x = kr.Residual(keras.layers.MultiHeadAttention(2, key_dim=4), norm="pre")(x)
    x = kr.Residual(keras.layers.Dense(8), norm="post", drop_path_rate=0.1)(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling1D()(x)))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 24, 2)).astype("float32")
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(True))
    loss = model.fit(x, np.arange(8) % 3, batch_size=4, epochs=2, verbose=0).history["loss"]
    assert np.all(np.isfinite(loss))
    model.save(tmp_path / "series.keras")
    loaded = keras.saving.load_model(tmp_path / "series.keras", safe_mode=True)
    assert_same_outputs(model, loaded, x)


def test_an_ensemble_averages_its_members_and_reloads_the_same(tmp_path):
    """`kr.ensemble`: the mean of its members' probabilities, saved and reloaded under
    safe_mode with the same outputs, on this backend; bad `models` named."""
    members = [kr.resnet_series((12, 2), 3, width=4) for _ in range(3)]
    x = np.random.default_rng(0).normal(size=(5, 12, 2)).astype("float32")
    alone = [keras.ops.convert_to_numpy(m(x, training=False)) for m in members]
    model = kr.ensemble(members)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(x, training=False)), np.mean(alone, axis=0), atol=1e-6
    )
    model.save(tmp_path / "ensemble.keras")
    loaded = keras.saving.load_model(tmp_path / "ensemble.keras", safe_mode=True)
    assert_same_outputs(model, loaded, x)
    names = [layer.name for layer in loaded.layers[1:]]
    assert names == ["member_0", "member_1", "member_2", "average"]
    assert kr.ensemble(members[:1]) is members[0]
    with pytest.raises(ValueError, match="`models` must hold at least one model"):
        kr.ensemble([])
    other = kr.resnet_series((12, 2), 4, width=4)
    with pytest.raises(ValueError, match=r"`models` must share their output shapes: model 1"):
        kr.ensemble([members[0], other])


def _every_layer_model():
    """A functional model holding every block kind and shortcut option."""
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    x = kr.BasicBlock(8, preact=True, se_ratio=0.25)(x)
    x = kr.BasicBlock(16, strides=2, shortcut="A")(x)
    x = kr.BasicBlock(16, shortcut="gated", drop_path_rate=0.1)(x)
    x = kr.BottleneckBlock(8, strides=2, groups=2, base_width=32, avg_down=True)(x)
    x = kr.DenseBlock(2, growth_rate=4)(x)
    x = kr.Transition(0.5)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(5)(x))


# Each backend's run sends its file to the next: with all three installed, every backend
# saves a file another one loads, and loads a file another one saved.
NEXT = {"tensorflow": "jax", "jax": "torch", "torch": "tensorflow"}[BACKEND]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec(NEXT) is None, reason=f"{NEXT} is not installed")
def test_a_keras_file_moves_to_the_next_backend(tmp_path):
    other = NEXT
    model = _every_layer_model()
    x = np.random.default_rng(0).random((3, 16, 16, 3), dtype="float32")
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, np.ones((3, 5)), epochs=1, verbose=0)  # moves weights and BN statistics
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "expected.npy", model.predict(x, verbose=0))
    # An eager call: the file's compile config says jit_compile=True when JAX saved it, and
    # PyTorch's predict() would then spend a minute in torch.compile.
    probe = (
        "import sys, numpy as np, keras, keras_residual\n"
        "d = sys.argv[1]\n"
        "m = keras.saving.load_model(d + '/m.keras', safe_mode=True)\n"
        "got = m(np.load(d + '/x.npy'), training=False)\n"
        "np.save(d + '/got.npy', keras.ops.convert_to_numpy(got))\n"
    )
    run_probe(probe, tmp_path, KERAS_BACKEND=other)
    np.testing.assert_allclose(
        np.load(tmp_path / "got.npy"), np.load(tmp_path / "expected.npy"),
        atol=CROSS_BACKEND_ATOL, rtol=0,
    )  # fmt: skip


@pytest.mark.skipif(BACKEND == "tensorflow", reason="on TensorFlow, TensorFlow is imported")
def test_layers_and_builders_import_no_tensorflow():
    probe = (
        "import sys, keras_residual as kr\n"
        "kr.build('resnet20', (16, 16, 3), 4, se_ratio=0.25).predict("
        "__import__('numpy').zeros((1, 16, 16, 3)), verbose=0)\n"
        "print('tensorflow' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "False"
