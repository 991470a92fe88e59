"""The user's own data as a `Dataset`: a folder of images in class subfolders, or an `.npz`
of arrays. Shape, classes and normalisation come from the data."""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_residual import _checks
from keras_residual.data.dataset import (
    DataError,
    Dataset,
    check_labels,
    labels_as_indices,
    read_npz,
)

# What keras.utils.image_dataset_from_directory reads.
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")


def _image_size(value) -> tuple[int, int] | None:
    if value is None:
        return None
    size = (value, value) if isinstance(value, int) else tuple(value)
    if len(size) != 2:
        raise ValueError(f"`image_size` must be an int or (height, width), got {value!r}.")
    return tuple(_checks.positive_int("image_size", side) for side in size)


def _decode(path: Path) -> tf.Tensor:
    return tf.io.decode_image(tf.io.read_file(str(path)), expand_animations=False)


def _unreadable(paths: list[Path]) -> list[str]:
    """`path (reason)` for each file TensorFlow cannot decode as an image."""
    bad = []
    for path in paths:
        try:
            _decode(path)
        except (tf.errors.OpError, ValueError) as error:
            reason = getattr(error, "message", str(error)).strip().splitlines()[0]
            bad.append(f"{path} ({reason})")
    return bad


def _split(count: int, fractions: tuple[float, float], seed: int):
    """Shuffled indices of the (train, validation, test) splits; the test split depends on
    its fraction and `seed` only, so a model is tested on the same images whatever the
    validation split it trained with."""
    order = np.random.default_rng(seed).permutation(count)
    val, test = (int(round(count * f)) for f in fractions)
    if count - val - test < 1:
        raise DataError(f"{count} examples leave none for training after the held-out splits.")
    return order[test + val :], order[test : test + val], order[:test]


def load_image_folder(
    path: str | os.PathLike,
    image_size: int | tuple[int, int] | None = None,
    *,
    validation_split: float = 0.1,
    test_split: float = 0.1,
    seed: int = 0,
) -> Dataset:
    """A folder with one subfolder of images per class, as a `Dataset`.

    Images are read by `keras.utils.image_dataset_from_directory` and resized (bilinear)
    to `image_size` (default: the first image's size); grayscale when every class's first
    image is, else RGB. `validation_split` and `test_split` of the images are held out
    (shuffled with `seed`). Every image is held in memory as uint8. A file that cannot be
    decoded is refused, named, not skipped: a silently smaller class would skew the data.

    Args:
        path: the folder; each subfolder is a class, named by the subfolder.
        image_size: `N` or `(height, width)` to resize to (default: the first image's).
        validation_split: the share of the images held out for validation.
        test_split: the share held out for testing (the same images whatever the
            validation split).
        seed: draws the held-out images.

    Raises:
        DataError: an empty folder, a single class, a class without images or a file
            that does not decode; the message names it.

    Example:
    >>> data = load_image_folder("photos/", image_size=64)  # doctest: +SKIP
    >>> data.input_shape, data.class_names  # doctest: +SKIP
    ((64, 64, 3), ('cats', 'dogs'))
    """
    folder = Path(path).expanduser()
    image_size = _image_size(image_size)
    _checks.rate("validation_split", validation_split)
    _checks.rate("test_split", test_split)
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder of class subfolders.")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = {
        name: sorted(p for p in (folder / name).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        for name in classes
    }
    if not classes:
        raise DataError(
            f"{folder} has no class subfolders: put each class's images in a subfolder "
            "named after the class."
        )
    empty = [name for name in classes if not files[name]]
    if empty:
        raise DataError(
            f"{folder}: the class folders {empty} hold no images ({', '.join(IMAGE_EXTENSIONS)})."
        )
    if len(classes) < 2:
        raise DataError(f"{folder} has one class ({classes[0]!r}); classification needs two.")
    first = [files[name][0] for name in classes]
    bad = _unreadable(first)
    if bad:
        raise DataError(f"Unreadable image: {bad[0]}. Remove or replace it.")
    probes = [_decode(p) for p in first]
    channels = 3 if any(p.shape[-1] >= 3 for p in probes) else 1
    image_size = image_size or tuple(probes[0].shape[:2])
    images = keras.utils.image_dataset_from_directory(
        folder,
        labels="inferred",
        label_mode="int",
        class_names=classes,
        color_mode="rgb" if channels == 3 else "grayscale",
        batch_size=256,
        image_size=image_size,
        shuffle=False,
        verbose=False,
    )
    try:
        batches = [(x.numpy(), y.numpy()) for x, y in images]
    except tf.errors.InvalidArgumentError:
        bad = _unreadable([p for name in classes for p in files[name]])
        raise DataError(
            f"{len(bad)} unreadable image(s) in {folder}: {'; '.join(bad[:5])}"
            f"{' ...' if len(bad) > 5 else ''}. Remove or replace them."
        ) from None
    x = np.clip(np.round(np.concatenate([b[0] for b in batches])), 0, 255).astype("uint8")
    y = np.concatenate([b[1] for b in batches])
    train, val, test = _split(len(y), (validation_split, test_split), seed)
    return Dataset(
        folder.name,
        x[train],
        y[train],
        x[val],
        y[val],
        x[test],
        y[test],
        tuple(classes),
        source=str(folder),
        augmentation={},  # unknown images: augment by choice (the recipe's flip, translate)
    )


def load_arrays(
    path: str | os.PathLike,
    *,
    validation_split: float = 0.1,
    test_split: float = 0.1,
    seed: int = 0,
) -> Dataset:
    """An `.npz` of `x_train`, `y_train` (and optionally `x_test`, `y_test`) as a `Dataset`.

    Images are NHWC or NHW (one channel added), of any numeric dtype; labels integer or
    one-hot. Series are `(n, steps)` (one channel added) or, with `layout="series"` saved
    beside them, `(n, steps, channels)`. Classes are `0 .. max(y_train)`. Without test
    arrays, `test_split` of the training set is held out for testing; `validation_split`
    always is.

    Args:
        path: the `.npz` file.
        validation_split: the share of the training arrays held out for validation.
        test_split: without `x_test`/`y_test`, the share held out for testing.
        seed: draws the held-out examples.

    Raises:
        DataError: a missing array, arrays that are not images or series, lengths that
            differ or labels that are not whole numbers from 0 (or, in `y_test`, not among
            `y_train`'s classes); the message names the file.

    Example:
    >>> data = load_arrays("my_arrays.npz")  # doctest: +SKIP
    >>> np.savez("my_series.npz", x_train=x, y_train=y, layout="series")  # doctest: +SKIP
    """
    path = Path(path).expanduser()
    _checks.rate("validation_split", validation_split)
    _checks.rate("test_split", test_split)
    arrays = read_npz(
        path, required=("x_train", "y_train"), optional=("x_test", "y_test", "layout")
    )
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"{path} has only one of x_test and y_test; give both or neither.")
    layout = str(arrays.pop("layout", "images"))
    if layout not in ("images", "series"):
        raise DataError(f"{path}: layout must be 'images' or 'series', got {layout!r}.")
    for key in [k for k in arrays if k.startswith("x_")]:
        x = arrays[key]
        series = layout == "series" or x.ndim == 2
        x = x[..., None] if x.ndim == (2 if series else 3) else x
        if x.ndim != (3 if series else 4) or x.dtype.kind not in "uif" or not len(x):
            what = "series (N, steps[, channels])" if series else "images (N, H, W[, C])"
            raise DataError(
                f"{path}: {key} must be a non-empty numeric array of {what}, "
                f"got {x.dtype} {x.shape}."
            )
        arrays[key] = x.astype("float32") if series else x
    for key in [k for k in arrays if k.startswith("y_")]:
        arrays[key] = labels_as_indices(f"{path}: {key}", arrays[key])
    for split in ("train", "test"):
        if f"x_{split}" in arrays and len(arrays[f"x_{split}"]) != len(arrays[f"y_{split}"]):
            raise DataError(
                f"{path}: x_{split} has {len(arrays[f'x_{split}'])} images but y_{split} "
                f"{len(arrays[f'y_{split}'])} labels."
            )
    y = check_labels(f"{path}: y_train", arrays["y_train"])
    classes = tuple(str(c) for c in range(int(y.max()) + 1))
    if "y_test" in arrays:
        check_labels(f"{path}: y_test (classes from y_train)", arrays["y_test"], len(classes))
    held_out = (validation_split, 0.0 if "x_test" in arrays else test_split)
    train, val, test = _split(len(y), held_out, seed)
    x = arrays["x_train"]
    x_test, y_test = arrays.get("x_test", x[test]), arrays.get("y_test", y[test])
    if x_test.shape[1:] != x.shape[1:]:
        raise DataError(f"{path}: x_test examples are {x_test.shape[1:]}, x_train {x.shape[1:]}.")
    return Dataset(
        path.stem, x[train], y[train], x[val], y[val], x_test, y_test, classes,
        source=str(path), augmentation={},
    )  # fmt: skip
