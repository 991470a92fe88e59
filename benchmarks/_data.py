"""Random data sets for the benchmarks (speed and memory do not depend on the pixels)."""

from __future__ import annotations

import numpy as np

import keras_residual as kr


def random_dataset(name: str, count: int, held_out: int = 128) -> kr.Dataset:
    """`count` random uint8 images of data set `name`'s shape with random labels; the
    validation and test splits are the first `held_out` of them."""
    spec = kr.data.DATASETS[name]
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (count, *spec["shape"]), dtype=np.uint8)
    y = rng.integers(0, len(spec["classes"]), count).astype("int32")
    small_x, small_y = x[:held_out], y[:held_out]
    return kr.Dataset(name, x, y, small_x, small_y, small_x, small_y, spec["classes"])
