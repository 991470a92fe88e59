"""The image sets of `keras.datasets` by name: online, or offline from a data directory."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import keras
import numpy as np

from keras_residual import _checks
from keras_residual.data.dataset import _KEYS, DataError, Dataset, check_labels, read_npz

DATA_ENV = "KERAS_RESIDUAL_DATA"
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
FASHION_MNIST_CLASSES = (
    "t-shirt/top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)
# The image sets of keras.datasets: what `load_dataset` takes by name.
# Training augmentation by default: the CIFAR sets' standard flip + 4-pixel shift; digits
# are neither flipped nor shifted.
_CIFAR_AUGMENTATION = {"flip": True, "translate": 4}
DATASETS = {
    "mnist": {"shape": (28, 28, 1), "classes": tuple(str(d) for d in range(10))},
    "fashion_mnist": {"shape": (28, 28, 1), "classes": FASHION_MNIST_CLASSES},
    "cifar10": {
        "shape": (32, 32, 3),
        "classes": CIFAR10_CLASSES,
        "augmentation": _CIFAR_AUGMENTATION,
    },
    "cifar100": {
        "shape": (32, 32, 3),
        "classes": tuple(str(c) for c in range(100)),
        "augmentation": _CIFAR_AUGMENTATION,
    },
}


def _read_cifar_batches(folder: Path) -> dict[str, np.ndarray]:
    def batch(name):
        try:
            with open(folder / name, "rb") as handle:
                entry = pickle.load(handle, encoding="bytes")
            images = np.asarray(entry[b"data"], dtype="uint8").reshape(-1, 3, 32, 32)
            return images.transpose(0, 2, 3, 1), np.asarray(entry[b"labels"], dtype="uint8")
        except (OSError, EOFError, KeyError, ValueError, pickle.UnpicklingError) as error:
            raise DataError(f"{folder / name} is truncated or corrupt ({error}).") from error

    parts = [batch(f"data_batch_{i}") for i in range(1, 6)]
    x_test, y_test = batch("test_batch")
    return {
        "x_train": np.concatenate([p[0] for p in parts]),
        "y_train": np.concatenate([p[1] for p in parts]),
        "x_test": x_test,
        "y_test": y_test,
    }


def _candidates(name: str, data_dir: Path) -> list[Path]:
    paths = [data_dir / name / f"{name}.npz", data_dir / f"{name}.npz"]
    if name == "cifar10":
        paths += [data_dir / "cifar-10-batches-py", data_dir / "cifar10" / "cifar-10-batches-py"]
    return paths


def _from_directory(name: str, data_dir: Path) -> tuple[dict, str]:
    for path in _candidates(name, data_dir):
        if path.suffix == ".npz" and path.is_dir():
            raise DataError(f"{path} is a folder; it should be an .npz file of {', '.join(_KEYS)}.")
        if path.is_file():
            return read_npz(path), str(path)
        if path.is_dir():
            return _read_cifar_batches(path), str(path)
    looked = "\n  ".join(str(p) for p in _candidates(name, data_dir))
    raise DataError(
        f"No {name} data in {data_dir}. Looked for:\n  {looked}\n"
        f"Put `{name}/{name}.npz` (uint8 arrays {', '.join(_KEYS)}) there"
        + (" or Keras's `cifar-10-batches-py` folder" if name == "cifar10" else "")
        + "."
    )


def _from_keras(name: str) -> tuple[dict, str]:
    loader = getattr(keras.datasets, name)
    try:
        (x_train, y_train), (x_test, y_test) = loader.load_data()
    except Exception as error:  # network, cache or checksum failure inside keras
        raise DataError(
            f"keras.datasets.{name}.load_data() failed ({type(error).__name__}: {error}).\n"
            f"Offline? Point --data-dir (or ${DATA_ENV}) at a folder holding "
            f"`{name}/{name}.npz` with uint8 arrays {', '.join(_KEYS)}"
            + (", or Keras's `cifar-10-batches-py` folder" if name == "cifar10" else "")
            + "."
        ) from error
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    return arrays, f"keras.datasets.{name}"


def _checked(name: str, arrays: dict, source: str) -> dict:
    shape = DATASETS[name]["shape"]
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], np.asarray(arrays[f"y_{split}"]).reshape(-1)
        if x.ndim == 3:
            x = x[..., None]
        if tuple(x.shape[1:]) != shape or x.dtype != np.uint8 or len(x) != len(y):
            raise DataError(
                f"{source}: x_{split} must be uint8 images of shape (N, *{shape}) with as "
                f"many labels; got {x.dtype} {x.shape} and {len(y)} labels."
            )
        classes = len(DATASETS[name]["classes"])
        arrays[f"x_{split}"] = x
        arrays[f"y_{split}"] = check_labels(f"{source}: y_{split}", y, classes)
    return arrays


def check_image_size(name: str, image_size) -> None:
    """Refuse an `image_size` for the named dataset `name`: only folders are resized.

    Example:
    >>> check_image_size("mnist", 8)
    Traceback (most recent call last):
    ...
    ValueError: `image_size` is for folders of images, not for 'mnist' (28x28 images).
    """
    if image_size is not None:
        shape = DATASETS.get(name, {}).get("shape")
        size = f" ({shape[0]}x{shape[1]} images)" if shape else ""
        raise ValueError(f"`image_size` is for folders of images, not for {name!r}{size}.")


def load_named(name: str, data_dir=None, validation_split: float = 0.1, seed: int = 0) -> Dataset:
    """The dataset `name` of `DATASETS`, from `data_dir` (or `$KERAS_RESIDUAL_DATA`) when
    given, else from `keras.datasets`, with `validation_split` of the training set held out.

    Example:
    >>> load_named("mnist").input_shape  # doctest: +SKIP
    (28, 28, 1)
    """
    _checks.choice("dataset", name, DATASETS)
    _checks.rate("validation_split", validation_split)
    data_dir = data_dir or os.environ.get(DATA_ENV) or None
    if data_dir:
        arrays, source = _from_directory(name, Path(data_dir).expanduser())
    else:
        arrays, source = _from_keras(name)
    arrays = _checked(name, arrays, source)
    order = np.random.default_rng(seed).permutation(len(arrays["y_train"]))
    held_out = int(round(len(order) * validation_split))
    train, val = order[held_out:], order[:held_out]
    x, y = arrays["x_train"], arrays["y_train"]
    return Dataset(
        name=name,
        x_train=x[train],
        y_train=y[train],
        x_val=x[val],
        y_val=y[val],
        x_test=arrays["x_test"],
        y_test=arrays["y_test"],
        class_names=DATASETS[name]["classes"],
        source=source,
        augmentation=dict(DATASETS[name].get("augmentation", {})),
    )
