"""Datasets: keras.datasets' image sets (online or from a data directory), the user's own
(`user_data`), and the tf.data pipelines that feed them to a model."""

from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_residual import _checks

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
DATASETS = {
    "mnist": {"shape": (28, 28, 1), "classes": tuple(str(d) for d in range(10))},
    "fashion_mnist": {"shape": (28, 28, 1), "classes": FASHION_MNIST_CLASSES},
    "cifar10": {"shape": (32, 32, 3), "classes": CIFAR10_CLASSES},
    "cifar100": {"shape": (32, 32, 3), "classes": tuple(str(c) for c in range(100))},
}
# Training augmentation by default: the CIFAR sets' standard flip + 4-pixel shift; digits
# and the user's own data (unknown: text, say) are neither flipped nor shifted.
AUGMENTATION = {name: {"flip": True, "translate": 4} for name in ("cifar10", "cifar100")}
# `flip`: none, random (each image, each epoch, half the time), or airbench's alternating
# flips (a random half flipped in even epochs, the other half in odd ones).
FLIPS = (False, True, "alternate")
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
    """Train / validation / test arrays (uint8 images NHWC, int labels) and class names."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    source: str = ""
    mean: np.ndarray = field(init=False)
    std: np.ndarray = field(init=False)

    def __post_init__(self):
        for split in ("train", "val", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if len(x) != len(y):
                raise DataError(f"x_{split} has {len(x)} images but y_{split} {len(y)} labels.")
            if len(y) or split == "train":
                labels = check_labels(f"y_{split}", y, len(self.class_names))
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


def check_labels(what: str, labels, num_classes: int) -> np.ndarray:
    """`labels` as int32 class indices in [0, num_classes), or a DataError saying what is wrong.

    Example:
    >>> check_labels("y", np.array([0.0, 1.0]), 2).tolist()
    [0, 1]
    >>> check_labels("y", np.array([0.5]), 2)
    Traceback (most recent call last):
    ...
    keras_residual.data.DataError: y must be whole class numbers in 0..1; got 0.5.
    """
    y = np.asarray(labels).reshape(-1)
    if not len(y):
        raise DataError(f"{what} is empty: give at least one example.")
    if y.dtype.kind in "iuf":
        finite = np.isfinite(y)
        wrong = ~finite | (y < 0) | (y >= num_classes) | (y != np.round(np.where(finite, y, 0)))
    else:  # strings, objects, ...
        wrong = np.ones(len(y), bool)
    if wrong.any():
        bad = y[wrong][0].item()
        raise DataError(f"{what} must be whole class numbers in 0..{num_classes - 1}; got {bad!r}.")
    return y.astype("int32")


def load_dataset(
    name: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    validation_split: float = 0.1,
    seed: int = 0,
    *,
    image_size: int | tuple[int, int] | None = None,
) -> Dataset:
    """Load a dataset with a held-out validation split of the training set.

    `name` is one of `DATASETS` (`mnist`, `fashion_mnist`, `cifar10`, `cifar100`), read
    from `data_dir` (or `$KERAS_RESIDUAL_DATA`) when given, holding `NAME/NAME.npz`,
    otherwise from `keras.datasets`; or the path of a folder of class subfolders of images
    (`load_image_folder`, resized to `image_size`) or of an `.npz` of arrays
    (`load_arrays`).

    Example:
    >>> data = load_dataset("mnist")  # doctest: +SKIP
    >>> data.x_train.shape, data.x_val.shape, data.x_test.shape  # doctest: +SKIP
    ((54000, 28, 28, 1), (6000, 28, 28, 1), (10000, 28, 28, 1))
    """
    if str(name) not in DATASETS:
        from keras_residual.user_data import load_arrays, load_image_folder

        path = Path(name).expanduser()
        options = {"validation_split": validation_split, "seed": seed}
        if path.is_dir():
            return load_image_folder(path, image_size, **options)
        if path.suffix == ".npz":
            return load_arrays(path, **options)
        if os.sep in str(name) or path.suffix:
            raise DataError(f"{path} does not exist.")
        raise DataError(
            f"`dataset` {str(name)!r} is neither one of {', '.join(DATASETS)} nor a folder "
            "of class subfolders or an .npz file."
        )
    if image_size is not None:
        raise ValueError(f"`image_size` is for folders of images, not for {name!r}.")
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
    )


def _random_crop_flip(images, seed, pad: int, mirrored=None):
    """Vectorised pad-and-crop of a whole batch, the images where `mirrored` (a boolean
    per image, or None) flipped horizontally: no per-image map."""
    if not pad and mirrored is None:
        return images
    batch = tf.shape(images)[0]
    height, width = images.shape[1], images.shape[2]
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    offsets = tf.random.stateless_uniform([2, batch], seed, 0, 2 * pad + 1, dtype=tf.int32)
    rows = offsets[0][:, None] + tf.range(height)[None, :]
    cols = offsets[1][:, None] + tf.range(width)[None, :]
    if mirrored is not None:
        cols = tf.where(mirrored[:, None], tf.reverse(cols, axis=[1]), cols)
    cropped = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(cropped, cols, axis=2, batch_dims=1)


def _epochs(epoch: tf.Variable | None) -> tf.data.Dataset:
    """A dataset of one element, drawn afresh at each pass over the pipeline it opens:
    the pass's 0-based epoch, read from `epoch` or, without one, counted from 0."""
    if epoch is None:
        count = tf.Variable(-1, dtype=tf.int64, trainable=False)
        return tf.data.Dataset.range(1).map(lambda _: count.assign_add(1))
    return tf.data.Dataset.range(1).map(lambda _: tf.cast(epoch, tf.int64))


def _cutout(images, seed, size: int):
    """Erase (set to the mean, 0) one `size` x `size` square per image, at a random centre
    (it may hang over the border), for a whole batch at once."""
    batch = tf.shape(images)[0]
    masks = []
    for axis, salt in ((1, 2), (2, 3)):
        extent = images.shape[axis]
        centre = tf.random.stateless_uniform([batch, 1], seed + [0, salt], 0, extent, tf.int32)
        start = centre - size // 2
        position = tf.range(extent)[None, :]
        masks.append((position >= start) & (position < start + size))
    erased = masks[0][:, :, None] & masks[1][:, None, :]
    return images * tf.cast(~erased, images.dtype)[..., None]


def make_pipeline(
    data: Dataset,
    split: str = "train",
    batch_size: int = 128,
    *,
    augment: bool | None = None,
    shuffle: bool | None = None,
    seed: int = 0,
    one_hot: bool = True,
    flip: bool | str | None = None,
    translate: int | None = None,
    cutout: int = 0,
    epoch: tf.Variable | None = None,
) -> tf.data.Dataset:
    """A batched, normalised, prefetched `tf.data.Dataset` of one split.

    Training defaults: shuffled each epoch (seeded) and augmented with the dataset's
    default (`AUGMENTATION`: for CIFAR-10 the standard 4-pixel pad + random crop +
    horizontal flip; MNIST is never flipped). `flip` (one of `FLIPS`: `"alternate"` flips
    a random half of the images in even epochs and the other half in odd ones, so each
    is seen both ways every two epochs), `translate` (pixels) and `cutout` (square side,
    0: none) override it when `augment` is on. Each pass draws its order, crops and flips
    from `seed` and its epoch: `epoch`, an integer `tf.Variable` the caller sets as each
    epoch begins (`train` does, so a resumed run continues them), or else the passes
    counted from 0. Per-channel mean/std come from the training split. Cardinality is
    known, so `fit` sees the epoch's end without probing past it, and autotuning is off
    (see the comment below).

    Example:
    >>> import numpy as np
    >>> x = np.zeros((10, 32, 32, 3), "uint8")
    >>> data = Dataset("cifar10", x, np.zeros(10, "int32"), x, np.zeros(10, "int32"),
    ...                x, np.zeros(10, "int32"), CIFAR10_CLASSES)
    >>> [tuple(t.shape) for t in next(iter(make_pipeline(data, batch_size=4)))]
    [(4, 32, 32, 3), (4, 10)]
    """
    _checks.choice("split", split, ("train", "val", "test"))
    _checks.positive_int("batch_size", batch_size)
    training = split == "train"
    augment = training if augment is None else augment
    shuffle = training if shuffle is None else shuffle
    images = tf.constant(getattr(data, f"x_{split}"))
    labels = tf.constant(getattr(data, f"y_{split}"))
    mean, std = tf.constant(data.mean), tf.constant(data.std)
    default = AUGMENTATION.get(data.name, {})
    flip = default.get("flip", False) if flip is None else _checks.choice("flip", flip, FLIPS)
    flip = flip if augment else False
    translate = default.get("translate", 0) if translate is None else translate
    translate = _checks.non_negative_int("translate", translate) if augment else 0
    cutout = _checks.non_negative_int("cutout", cutout) if augment else 0

    count = int(labels.shape[0])
    steps = -(-count // batch_size)
    if flip == "alternate":
        first_flips = tf.constant(np.random.default_rng(seed).random(count) < 0.5)

    def one_epoch(epoch):
        order = tf.range(count, dtype=tf.int64)
        if shuffle:
            order = tf.random.experimental.stateless_shuffle(order, [seed, 2 * epoch])
        step_seeds = tf.random.stateless_uniform(
            [steps, 2], [seed, 2 * epoch + 1], minval=None, maxval=None, dtype=tf.int64
        )
        return tf.data.Dataset.zip(
            tf.data.Dataset.from_tensor_slices(order).batch(batch_size),
            tf.data.Dataset.from_tensor_slices(step_seeds),
            tf.data.Dataset.from_tensors(epoch % 2 == 1).repeat(),
        )

    def load(index, step_seed, odd_epoch):
        x = (tf.cast(tf.gather(images, index), tf.float32) - mean) / std
        if flip == "alternate":
            mirrored = tf.gather(first_flips, index) != odd_epoch
        elif flip:
            mirrored = tf.random.stateless_uniform(tf.shape(index), step_seed + [0, 1]) < 0.5
        else:
            mirrored = None
        x = _random_crop_flip(x, step_seed, pad=translate, mirrored=mirrored)
        if cutout:
            x = _cutout(x, step_seed, cutout)
        y = tf.gather(labels, index)
        return x, (tf.one_hot(y, data.num_classes) if one_hot else y)

    # tf.data's autotuner sleeps in doubling periods (10 ms ... 5.12 s) and an iterator's
    # teardown waits out the current one: `fit` calls then end at 5.1/10.2/20.5 s whatever
    # the work. Fixed parallelism with autotuning off keeps the speed without the stall.
    options = tf.data.Options()
    options.autotune.enabled = False
    workers = os.cpu_count() or 2
    return (
        _epochs(epoch)
        .flat_map(one_epoch)
        .map(load, num_parallel_calls=workers, deterministic=True)
        .apply(tf.data.experimental.assert_cardinality(steps))
        .prefetch(2)
        .with_options(options)
    )
