"""`load_dataset`: a named image set, a folder of images, an archive time-series dataset or
an `.npz` of arrays."""

from __future__ import annotations

import os
from pathlib import Path

from keras_residual.data.dataset import DataError, Dataset
from keras_residual.data.named import DATASETS, check_image_size, load_named
from keras_residual.data.series import SERIES_EXTENSIONS, load_series, series_files
from keras_residual.data.user import load_arrays, load_image_folder


def load_dataset(
    name: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    validation_split: float = 0.1,
    seed: int = 0,
    *,
    image_size: int | tuple[int, int] | None = None,
) -> Dataset:
    """Load a dataset with a held-out validation split of the training set.

    Args:
        name: one of `DATASETS` (`mnist`, `fashion_mnist`, `cifar10`, `cifar100`); or the
            path of a folder of class subfolders of images (`load_image_folder`), of a
            UCR/UEA time-series dataset (a folder holding `<Name>_TRAIN.ts` and
            `<Name>_TEST.ts` or `.tsv`, or one of those files: `load_series`) or of an
            `.npz` of arrays (`load_arrays`).
        data_dir: for a named dataset, a folder holding `NAME/NAME.npz` (default:
            `$KERAS_RESIDUAL_DATA`, else `keras.datasets` downloads it).
        validation_split: the share of the training set held out for validation.
        seed: draws the validation split (and a folder's test split).
        image_size: `N` or `(height, width)` a folder's images are resized to (default:
            the first image's); refused for anything but a folder.

    Raises:
        DataError: the data cannot be found or read; the message names the file.

    Example:
    >>> data = load_dataset("mnist")  # doctest: +SKIP
    >>> data.x_train.shape, data.x_val.shape, data.x_test.shape  # doctest: +SKIP
    ((54000, 28, 28, 1), (6000, 28, 28, 1), (10000, 28, 28, 1))
    """
    if str(name) not in DATASETS:
        path = Path(name).expanduser()
        options = {"validation_split": validation_split, "seed": seed}
        if path.suffix in SERIES_EXTENSIONS or (path.is_dir() and series_files(path)):
            check_image_size(str(path), image_size)
            return load_series(path, **options)
        if path.is_dir():
            return load_image_folder(path, image_size, **options)
        if path.suffix == ".npz":
            check_image_size(str(path), image_size)
            return load_arrays(path, **options)
        if os.sep in str(name) or path.suffix:
            raise DataError(f"{path} does not exist.")
        raise DataError(
            f"`dataset` {str(name)!r} is neither one of {', '.join(DATASETS)} nor a folder "
            "of class subfolders, a time-series dataset (<Name>_TRAIN.ts) or an .npz file."
        )
    check_image_size(name, image_size)
    return load_named(name, data_dir, validation_split, seed)
