import keras
import numpy as np
import pytest

import keras_residual as kr
from keras_residual import precision


def _compute_dtypes(model):
    block = model.get_layer("stage2_block1")
    return block.branch_layers()["conv1"].compute_dtype, model.get_layer(
        "predictions"
    ).compute_dtype


def test_builders_follow_keras_global_policy_like_keras_layers(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bfloat16", lambda: True)
    model = kr.resnet_cifar(8, (16, 16, 3), width=4)  # whatever the CPU: Keras's default
    assert _compute_dtypes(model) == ("float32", "float32")
    keras.config.set_dtype_policy("mixed_bfloat16")
    assert _compute_dtypes(kr.resnet_cifar(8, (16, 16, 3), width=4)) == ("bfloat16", "float32")
    model = kr.resnet_cifar(8, (16, 16, 3), width=4, dtype="float32")  # dtype= wins
    assert _compute_dtypes(model) == ("float32", "float32")
    assert keras.config.dtype_policy().name == "mixed_bfloat16"  # restored after building


@pytest.mark.parametrize(
    ("native", "gpus", "expected"),
    [
        (True, [], "mixed_bfloat16"),
        (False, [], "float32"),
        (True, [(8, 0)], "mixed_float16"),
        (False, [(6, 1)], "float32"),
    ],
)
def test_auto_picks_by_capability(monkeypatch, native, gpus, expected):
    monkeypatch.setattr(precision, "cpu_has_native_bfloat16", lambda: native)
    monkeypatch.setattr(precision, "_gpu_compute_capabilities", lambda: gpus)
    assert kr.resolve_dtype("auto") == expected
    model = kr.resnet_cifar(8, (16, 16, 3), width=4, dtype="auto")
    assert _compute_dtypes(model)[0] == keras.dtype_policies.get(expected).compute_dtype


def test_resolve_dtype_none_is_the_keras_policy():
    keras.config.set_dtype_policy("mixed_float16")
    assert kr.resolve_dtype(None) == "mixed_float16"
    assert kr.resolve_dtype("float32") == "float32"


@pytest.mark.slow
@pytest.mark.parametrize("builder", [kr.resnet_cifar, kr.densenet])
def test_bfloat16_model_saves_loads_and_trains_like_float32(builder, tmp_path):
    x = np.random.default_rng(0).normal(size=(8, 16, 16, 3)).astype("float32")
    y = keras.utils.to_categorical(np.arange(8), 10)
    arguments = {"depth": 8, "width": 4} if builder is kr.resnet_cifar else {"depth": 10}
    losses = {}
    for dtype in ("float32", "mixed_bfloat16"):
        keras.utils.set_random_seed(0)
        model = builder(**arguments, input_shape=(16, 16, 3), dtype=dtype)
        model.compile("adam", "categorical_crossentropy")
        losses[dtype] = np.array(model.fit(x, y, epochs=20, verbose=0).history["loss"])
    assert losses["float32"][-1] < 0.75 * losses["float32"][0]
    np.testing.assert_allclose(losses["mixed_bfloat16"], losses["float32"], atol=0.05)
    before = model.predict(x, verbose=0)
    assert before.dtype == np.float32  # the classifier stays float32
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), before)
    assert loaded.get_layer("stem_conv").compute_dtype == "bfloat16"
    assert all(w.dtype == "float32" for w in loaded.weights)  # float32 master weights


def test_keras_compat_follows_the_keras_policy(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bfloat16", lambda: True)
    model = kr.resnet(50, (32, 32, 3), 10, keras_compat=True)
    assert model.get_layer("stem_conv").compute_dtype == "float32"


def test_bad_dtype_names_the_argument():
    with pytest.raises(ValueError, match="`dtype` must be 'auto' or one of"):
        kr.resnet_cifar(8, dtype="float33")
    assert keras.config.dtype_policy().name == "float32"
