"""Serving artifacts that compute in float32: a TensorFlow SavedModel or a TFLite file.

Whatever policy a model trained under (`mixed_bfloat16` here by default), the artifact is
made from its float32 twin (same layers, same weights, float32 compute), because TFLite
cannot convert bfloat16 graphs and servers expect float32. Before anything is written to
`out`, the artifact runs on random inputs and must match the float32 Keras model within the
tolerance; it needs nothing from this package to serve.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from keras_residual import _checks
from keras_residual._files import check_output_dir

FORMATS = ("saved_model", "tflite")
_POLICY_CLASSES = ("DTypePolicy", "FloatDTypePolicy")


class ExportMismatch(RuntimeError):
    """The exported artifact computes something else than the Keras model; nothing written."""


@dataclass(frozen=True)
class ExportReport:
    """What `export` wrote and how closely it matches.

    `max_abs_diff`: the artifact vs the float32 Keras model, on `samples` random inputs;
    `source_max_abs_diff`: the artifact vs the model as given (its own dtype policy).
    """

    path: str
    format: str
    source_policy: str
    max_abs_diff: float
    source_max_abs_diff: float
    tolerance: float


def load_model(path: str | os.PathLike) -> keras.Model:
    """The Keras model saved in `path`, or a ValueError naming the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"`model` {path}: no such file.")
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"`model` {path} is not a .keras model: a .keras file is a zip archive, and this "
            "one is not (truncated, corrupt or another format)."
        )
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as error:  # Keras raises many kinds for a zip that is not a model
        detail = (str(error).strip().splitlines() or [""])[0]
        raise ValueError(
            f"`model` {path} is not a readable .keras model ({type(error).__name__}: {detail})."
        ) from error


def _float32_config(value: Any) -> Any:
    """A model config with every layer's dtype policy replaced by float32."""
    if isinstance(value, dict):
        if value.get("class_name") in _POLICY_CLASSES and "config" in value:
            return {**value, "config": {**value["config"], "name": "float32"}}
        return {k: _float32_config(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_float32_config(v) for v in value]
    return value


def float32_twin(model: keras.Model) -> keras.Model:
    """`model` rebuilt with every layer computing in float32, its weights carried over
    (float weights cast to float32).

    Example:
    >>> from keras_residual import resnet_cifar
    >>> model = resnet_cifar(8, (16, 16, 3), width=4, dtype="mixed_bfloat16")
    >>> float32_twin(model).get_layer("stem_conv").compute_dtype
    'float32'
    """
    twin = type(model).from_config(_float32_config(model.get_config()))
    weights = [
        w.astype("float32") if np.issubdtype(w.dtype, np.floating) or w.dtype.name == "bfloat16"
        else w
        for w in (np.asarray(keras.ops.convert_to_numpy(v)) for v in model.weights)
    ]  # fmt: skip
    twin.set_weights(weights)
    return twin


def _policy_of(model: keras.Model) -> str:
    """The dtype policy most of `model`'s layers with weights compute in."""
    names = [layer.dtype_policy.name for layer in model.layers if layer.weights]
    return max(set(names), key=names.count) if names else model.dtype_policy.name


def _random_inputs(model: keras.Model, samples: int, seed: int) -> np.ndarray:
    shape = tuple(32 if d is None else d for d in model.input_shape[1:])
    return np.random.default_rng(seed).normal(size=(samples, *shape)).astype("float32")


def _run_saved_model(path: Path, x: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    served = tf.saved_model.load(str(path))
    return np.asarray(served.serve(tf.constant(x)))


def _write_tflite(saved_model: Path, path: Path) -> None:
    import tensorflow as tf

    path.write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(saved_model)).convert())


def _run_tflite(path: Path, x: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=str(path))
    (given,) = interpreter.get_input_details()
    interpreter.resize_tensor_input(given["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(given["index"], x)
    interpreter.invoke()
    (output,) = interpreter.get_output_details()
    return interpreter.get_tensor(output["index"])


def export(
    model: keras.Model | str | os.PathLike,
    out: str | os.PathLike,
    format: str = "saved_model",
    *,
    overwrite: bool = False,
    tolerance: float = 1e-4,
    samples: int = 4,
    seed: int = 0,
) -> ExportReport:
    """Write `model` (or the `.keras` file at that path) as a float32 serving artifact.

    Args:
        model: a Keras model or the path of a `.keras` file.
        out: the SavedModel folder or the `.tflite` file to write.
        format: `"saved_model"` or `"tflite"`.
        overwrite: replace an existing `out`.
        tolerance: the largest absolute difference allowed between the artifact's outputs
            and the float32 Keras model's on the check's random inputs.
        samples, seed: the check's random inputs.

    Raises:
        ValueError: a bad argument, model file or `out` (nothing is written).
        ExportMismatch: the artifact computes something else (nothing is written).

    Example:
    >>> import tempfile, pathlib
    >>> from keras_residual import resnet_cifar
    >>> model = resnet_cifar(8, (16, 16, 3), width=4, dtype="mixed_bfloat16")
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "model.tflite"
    >>> report = export(model, out, "tflite")
    >>> report.max_abs_diff < report.tolerance, out.exists()
    (True, True)
    """
    _checks.choice("format", format, FORMATS)
    tolerance = _checks.positive("tolerance", tolerance)
    _checks.positive_int("samples", samples)
    out = check_output_dir(out, "out") if format == "saved_model" else Path(out)
    if format == "tflite":
        if out.exists() and out.is_dir():
            raise ValueError(f"`out` {out} is a folder; a TFLite model is one file.")
        check_output_dir(out.parent, "out")
    if out.exists() and not overwrite:
        raise ValueError(f"`out` {out} exists: pass overwrite=True (--overwrite) to replace it.")
    if not isinstance(model, keras.Model):
        model = load_model(model)
    twin = float32_twin(model)
    x = _random_inputs(twin, samples, seed)
    expected = twin.predict(x, verbose=0)
    source = np.asarray(model.predict(x, verbose=0), dtype="float32")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as scratch:
        saved = Path(scratch) / "saved_model"
        twin.export(str(saved), format="tf_saved_model", verbose=False)
        if format == "saved_model":
            artifact, got = saved, _run_saved_model(saved, x)
        else:
            artifact = Path(scratch) / "model.tflite"
            _write_tflite(saved, artifact)
            got = _run_tflite(artifact, x)
        difference = float(np.abs(got - expected).max())
        if not difference <= tolerance:
            raise ExportMismatch(
                f"the {format} artifact differs from the float32 Keras model by up to "
                f"{difference:.3g} (tolerance {tolerance:g}); nothing was written to {out}."
            )
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(artifact, out)
    return ExportReport(
        path=str(out),
        format=format,
        source_policy=_policy_of(model),
        max_abs_diff=difference,
        source_max_abs_diff=float(np.abs(got - source).max()),
        tolerance=tolerance,
    )
