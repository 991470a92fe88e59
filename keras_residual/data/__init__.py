"""Datasets: the `Dataset` type (`dataset`), keras.datasets' image sets by name (`named`),
the user's own images and arrays (`user`), time series in the UCR/UEA archive's formats
(`series`), `load_dataset` over all of them (`loading`), and the
tf.data pipelines that feed them to a model (`pipelines`). Each imports only those before it.
"""

from keras_residual.data.dataset import (
    DataError,
    Dataset,
    check_labels,
    labels_as_indices,
    read_npz,
)
from keras_residual.data.loading import load_dataset  # noqa: I001 (after what it loads)
from keras_residual.data.named import (
    CIFAR10_CLASSES,
    DATA_ENV,
    DATASETS,
    FASHION_MNIST_CLASSES,
    check_image_size,
    load_named,
)
from keras_residual.data.pipelines import FLIPS, make_pipeline
from keras_residual.data.series import load_series, read_ts, read_tsv
from keras_residual.data.user import load_arrays, load_image_folder

__all__ = [
    "CIFAR10_CLASSES",
    "DATASETS",
    "DATA_ENV",
    "DataError",
    "Dataset",
    "FASHION_MNIST_CLASSES",
    "FLIPS",
    "check_image_size",
    "check_labels",
    "labels_as_indices",
    "load_arrays",
    "load_dataset",
    "load_image_folder",
    "load_named",
    "load_series",
    "make_pipeline",
    "read_npz",
    "read_ts",
    "read_tsv",
]
