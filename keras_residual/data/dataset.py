"""The `Dataset` type (uint8 images and int labels of three splits) and the checks every
loader puts its arrays through."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from keras_residual import _checks

_KEYS = ("x_train", "y_train", "x_test", "y_test")


class DataError(ValueError):
    """A data set that cannot be found or read; the message says what to do."""


def _channel_statistics(images: np.ndarray, chunk: int = 1024):
    """Per-channel mean and standard deviation (1 where a channel is constant), in float32,
    accumulated in float64 a chunk of images at a time (no full-size float copy)."""
    total = np.zeros(images.shape[-1])
    squares = np.zeros(images.shape[-1])
    for start in range(0, len(images), chunk):
        part = images[start : start + chunk].reshape(-1, images.shape[-1]).astype("float64")
        total += part.sum(axis=0)
        squares += np.square(part).sum(axis=0)
    count = max(1, images.size // images.shape[-1])
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    return mean.astype("float32"), np.where(std > 1e-6, std, 1.0).astype("float32")


@dataclass
class Dataset:
    """Train / validation / test arrays (uint8 images NHWC, int labels) and class names.

    `augmentation` is the training augmentation the data takes by default (`flip`,
    `translate`), stated by its loader: the CIFAR sets' flips and 4-pixel shifts, none for
    digits and for the user's own data (text, say, must not be mirrored). None (a
    `Dataset` made by hand) takes the named set's, as `DATASETS` states it."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    source: str = ""
    augmentation: dict | None = None  # the training default, as its loader states it
    mean: np.ndarray = field(init=False)
    std: np.ndarray = field(init=False)

    def __post_init__(self):
        for split in ("train", "val", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if len(x) != len(y):
                raise DataError(f"x_{split} has {len(x)} images but y_{split} {len(y)} labels.")
            if len(y) or split == "train":
                what = f"{self.source}: y_{split}" if self.source else f"y_{split}"
                labels = check_labels(what, y, len(self.class_names))
                setattr(self, f"y_{split}", labels)
        self.mean, self.std = _channel_statistics(self.x_train)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def normalize(self, images: np.ndarray) -> np.ndarray:
        """`images` (uint8 NHWC) standardised the way the pipelines feed them to a model.

        Example:
        >>> import numpy as np
        >>> x, y = np.full((4, 2, 2, 1), 7, "uint8"), np.zeros(4, "int32")
        >>> Dataset("mnist", x, y, x, y, x, y, ("0",)).normalize(x[:1]).ravel().tolist()
        [0.0, 0.0, 0.0, 0.0]
        """
        return (images.astype("float32") - self.mean) / self.std

    def fold_validation(self) -> Dataset:
        """The validation split moved into the training split, standardised as before:
        what a final model trains on once the validation split has chosen it.

        Example:
        >>> import numpy as np
        >>> x, y = np.zeros((10, 28, 28, 1), "uint8"), np.arange(10) % 2
        >>> folded = Dataset("mnist", x, y, x[:3], y[:3], x, y, ("0", "1")).fold_validation()
        >>> len(folded.y_train), len(folded.y_val)
        (13, 0)
        """
        folded = replace(
            self,
            x_train=np.concatenate([self.x_train, self.x_val]),
            y_train=np.concatenate([self.y_train, self.y_val]),
            x_val=self.x_val[:0],
            y_val=self.y_val[:0],
        )
        folded.mean, folded.std = self.mean, self.std  # as `evaluate` will feed it the test
        return folded

    def subset(self, train: int | None = None, val: int | None = None, test: int | None = None):
        """The first `train` / `val` / `test` examples of each split (None keeps a split whole).

        Example:
        >>> import numpy as np
        >>> x, y = np.zeros((10, 28, 28, 1), "uint8"), np.arange(10) % 2
        >>> small = Dataset("mnist", x, y, x, y, x, y, ("0", "1")).subset(train=4)
        >>> len(small.y_train), len(small.y_val)
        (4, 10)
        """
        for name, count in (("train", train), ("val", val), ("test", test)):
            if count is not None:
                _checks.positive_int(name, count)
        return replace(
            self,
            x_train=self.x_train[:train],
            y_train=self.y_train[:train],
            x_val=self.x_val[:val],
            y_val=self.y_val[:val],
            x_test=self.x_test[:test],
            y_test=self.y_test[:test],
        )


def read_npz(
    path: Path, required: tuple[str, ...] = _KEYS, optional: tuple[str, ...] = ()
) -> dict[str, np.ndarray]:
    """The `required` (and present `optional`) arrays of the .npz archive `path`, or a
    DataError naming the file and what is wrong with it."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise DataError(
                f"{path} holds a single array (np.save), not an .npz archive of "
                f"{', '.join(required)}: write it with np.savez."
            )
        with loaded as archive:
            missing = [k for k in required if k not in archive.files]
            if missing:
                raise DataError(f"{path} lacks the arrays {missing}; it needs {list(required)}.")
            return {k: archive[k] for k in (*required, *optional) if k in archive.files}
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path} does not exist.") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile) as error:
        raise DataError(
            f"{path} is truncated or corrupt ({type(error).__name__}: {error}); "
            "replace it with a good copy."
        ) from error


def labels_as_indices(what: str, labels) -> np.ndarray:
    """Integer class labels from integer or one-hot `labels`.

    Example:
    >>> labels_as_indices("y", np.eye(3)[[2, 0]]).tolist()
    [2, 0]
    """
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] > 1:
        if not np.all((labels == 0) | (labels == 1)) or not np.all(labels.sum(axis=1) == 1):
            raise DataError(f"{what} has 2-D rows that are not one-hot.")
        return labels.argmax(axis=1)
    return labels.reshape(-1)


def check_labels(what: str, labels, num_classes: int | None = None) -> np.ndarray:
    """`labels` as int32 class indices in [0, num_classes) (any whole number from 0 when
    `num_classes` is None), or a DataError saying what is wrong.

    Example:
    >>> check_labels("y", np.array([0.0, 1.0]), 2).tolist()
    [0, 1]
    >>> check_labels("y", np.array([0.5]), 2)
    Traceback (most recent call last):
    ...
    keras_residual.data.dataset.DataError: y must be whole class numbers in 0..1; got 0.5.
    >>> check_labels("y", np.array([3, -1]))
    Traceback (most recent call last):
    ...
    keras_residual.data.dataset.DataError: y must be whole class numbers from 0 up; got -1.
    """
    y = np.asarray(labels).reshape(-1)
    if not len(y):
        raise DataError(f"{what} is empty: give at least one example.")
    limit = np.iinfo("int32").max if num_classes is None else num_classes
    if y.dtype.kind in "iuf":
        finite = np.isfinite(y)
        wrong = ~finite | (y < 0) | (y >= limit) | (y != np.round(np.where(finite, y, 0)))
    else:  # strings, objects, ...
        wrong = np.ones(len(y), bool)
    if wrong.any():
        bad = y[wrong][0].item()
        allowed = "from 0 up" if num_classes is None else f"in 0..{num_classes - 1}"
        raise DataError(f"{what} must be whole class numbers {allowed}; got {bad!r}.")
    return y.astype("int32")
