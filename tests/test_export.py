import os

import keras
import numpy as np
import pytest
from conftest import FAMILIES, run_probe, shrunk

import keras_residual as kr
from keras_residual.exporting import float32_twin
from keras_residual_cli import main


@pytest.mark.parametrize("name", FAMILIES)
def test_every_preset_family_exports_in_float32(name, tmp_path):
    """TFLite: its conversion is what a layer can break; the SavedModel it converts is the
    `saved_model` form's (served in test_artifacts_serve_without_this_package). One block
    a stage: a repeated block converts to the ops its stage's first one does."""
    spec = shrunk(name, widest=16, deepest=1)
    model = kr.build_network(spec, dtype="mixed_bfloat16")  # as `--dtype auto` trains
    report = kr.export(model, tmp_path / "m.tflite", "tflite")
    assert (tmp_path / "m.tflite").exists() and report.max_abs_diff <= report.tolerance
    assert report.source_policy == "mixed_bfloat16"


def test_a_network_that_resizes_its_input_exports(tmp_path):
    """What an image search may pick (`input_scale`): its `input_resize` layer converts."""
    spec = kr.fast_cifar_spec("s", (24, 24, 1), 3, filters=(8, 16, 16), input_scale=2 / 3)
    model = kr.build_network(spec, dtype="mixed_bfloat16")
    report = kr.export(model, tmp_path / "m.tflite", "tflite")
    assert (tmp_path / "m.tflite").exists() and report.max_abs_diff <= report.tolerance


def test_an_ensemble_exports_as_one_model(tmp_path):
    """What a series search saves with `--ensemble`: copies averaged, in mixed bfloat16."""
    members = [kr.resnet_series((24, 2), 3, width=8, dtype="mixed_bfloat16") for _ in range(2)]
    report = kr.export(kr.ensemble(members), tmp_path / "m.tflite", "tflite")
    assert (tmp_path / "m.tflite").exists() and report.max_abs_diff <= report.tolerance


def test_a_bfloat16_trained_model_file_becomes_a_float32_tflite_file(tmp_path, capsys):
    model = kr.resnet_cifar(8, (16, 16, 3), 4, width=8, dtype="mixed_bfloat16")
    x = np.random.default_rng(0).random((8, 16, 16, 3), dtype="float32")
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    model.fit(x, keras.utils.to_categorical(np.arange(8) % 4, 4), epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    twin = float32_twin(model)
    assert {layer.compute_dtype for layer in twin.layers} == {"float32"}
    for ours, theirs in zip(twin.weights, model.weights, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(ours), theirs.numpy())
    out = tmp_path / "m.tflite"
    argv = ["export", str(tmp_path / "m.keras"), "--format", "tflite", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "computing in float32" in printed and "tolerance 0.0001" in printed
    assert "vs the model as trained (mixed_bfloat16)" in printed
    assert main(argv) == 2  # exists: not without --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0


@pytest.mark.slow
def test_artifacts_serve_without_this_package(tmp_path):
    model = kr.resnet_cifar(8, (16, 16, 3), 4, width=8)
    kr.export(model, tmp_path / "saved", "saved_model")
    kr.export(model, tmp_path / "m.tflite", "tflite")
    x = np.random.default_rng(1).random((2, 16, 16, 3), dtype="float32")
    np.save(tmp_path / "x.npy", x)
    probe = (
        "import sys, numpy as np, tensorflow as tf\n"
        "d = sys.argv[1]; x = np.load(d + '/x.npy')\n"
        "served = tf.saved_model.load(d + '/saved')\n"
        "a = served.serve(tf.constant(x)).numpy()\n"
        "i = tf.lite.Interpreter(model_path=d + '/m.tflite')\n"
        "i.resize_tensor_input(i.get_input_details()[0]['index'], x.shape)\n"
        "i.allocate_tensors(); i.set_tensor(i.get_input_details()[0]['index'], x); i.invoke()\n"
        "b = i.get_tensor(i.get_output_details()[0]['index'])\n"
        "assert not [m for m in sys.modules if m.startswith('keras_residual')]\n"
        "np.save(d + '/a.npy', a); np.save(d + '/b.npy', b)\n"
    )
    run_probe(probe, tmp_path)
    expected = model.predict(x, verbose=0)
    for name in ("a", "b"):
        np.testing.assert_allclose(np.load(tmp_path / f"{name}.npy"), expected, atol=1e-4)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"format": "onnx"}, "`format` must be one of 'saved_model', 'tflite'"),
        ({"model": "missing.keras"}, "`model` .*missing.keras: no such file"),
        ({"model": "corrupt.keras"}, "is not a .keras model"),
        ({"tolerance": float("nan")}, "`tolerance`"),
        ({"out": "exists.tflite"}, "exists: pass overwrite=True"),
        ({"out": "/dev/null/m.tflite"}, "`out` /dev/null is a file, not a folder"),
    ],
)
def test_bad_export_arguments_write_nothing(arguments, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corrupt.keras").write_text("no")
    (tmp_path / "exists.tflite").write_text("keep me")
    call = {"model": kr.resnet_cifar(8, (16, 16, 3), 4, width=4), "out": "m.tflite"}
    call |= {"format": "tflite"} | arguments
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(ValueError, match=message):
        kr.export(call.pop("model"), call.pop("out"), **call)
    assert sorted(os.listdir(tmp_path)) == before
    assert (tmp_path / "exists.tflite").read_text() == "keep me"
