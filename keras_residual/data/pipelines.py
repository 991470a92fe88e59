"""tf.data pipelines that feed a `Dataset` to a model: normalised, shuffled and augmented
per epoch from a seed, vectorised over each batch."""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from keras_residual import _checks
from keras_residual.data.dataset import Dataset
from keras_residual.data.named import DATASETS
from keras_residual.recipes import FLIPS


def _random_crop_flip(images, seed, pad: int, mirrored=None):
    """Vectorised pad-and-crop of a whole batch, the images where `mirrored` (a boolean
    per image, or None) flipped horizontally: no per-image map. A batch of series
    `(batch, steps, channels)` is shifted along its steps (zero, the mean, fills in) and
    mirrored in time."""
    if not pad and mirrored is None:
        return images
    spatial = list(range(1, images.shape.rank - 1))  # rows and columns, or steps
    batch = tf.shape(images)[0]
    padded = tf.pad(images, [[0, 0]] + [[pad, pad]] * len(spatial) + [[0, 0]])
    offsets = tf.random.stateless_uniform(
        [len(spatial), batch], seed, 0, 2 * pad + 1, dtype=tf.int32
    )
    cropped = padded
    for draw, axis in enumerate(spatial):
        positions = offsets[draw][:, None] + tf.range(images.shape[axis])[None, :]
        if mirrored is not None and axis == spatial[-1]:
            positions = tf.where(mirrored[:, None], tf.reverse(positions, axis=[1]), positions)
        cropped = tf.gather(cropped, positions, axis=axis, batch_dims=1)
    return cropped


def _epochs(epoch: tf.Variable | None) -> tf.data.Dataset:
    """A dataset of one element, drawn afresh at each pass over the pipeline it opens:
    the pass's 0-based epoch, read from `epoch` or, without one, counted from 0."""
    if epoch is None:
        count = tf.Variable(-1, dtype=tf.int64, trainable=False)
        return tf.data.Dataset.range(1).map(lambda _: count.assign_add(1))
    return tf.data.Dataset.range(1).map(lambda _: tf.cast(epoch, tf.int64))


def _cutout(images, seed, size: int):
    """Erase (set to the mean, 0) one `size` x `size` square per image (a `size`-step
    window per series), at a random centre (it may hang over the border), for a whole
    batch at once."""
    batch = tf.shape(images)[0]
    spatial = range(1, images.shape.rank - 1)  # rows and columns, or steps
    erased = tf.ones([batch] + [1] * len(spatial), tf.bool)
    for axis in spatial:
        extent = images.shape[axis]
        centre = tf.random.stateless_uniform([batch, 1], seed + [0, axis + 1], 0, extent, tf.int32)
        start = centre - size // 2
        position = tf.range(extent)[None, :]
        inside = (position >= start) & (position < start + size)
        erased &= tf.reshape(inside, [-1] + [extent if a == axis else 1 for a in spatial])
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

    Each pass draws its order, crops and flips from `seed` and its epoch. Cardinality is
    known, so `fit` sees the epoch's end without probing past it, and autotuning is off
    (see the comment below). Per-channel mean and std come from the training split.

    Args:
        data: the `Dataset`.
        split: `"train"`, `"val"` or `"test"`.
        batch_size: images per batch (the last batch may be smaller).
        augment: augment the images (default: for the training split), with the
            dataset's default (`Dataset.augmentation`: for CIFAR the standard 4-pixel
            pad + random crop + horizontal flip; MNIST and the user's data: none) unless
            `flip`, `translate` or `cutout` say otherwise.
        shuffle: a new order each epoch (default: for the training split).
        seed: seeds the order and the augmentation.
        one_hot: one-hot labels (else integers).
        flip: one of `FLIPS`: none, random, or `"alternate"` (a random half of the images
            flipped in even epochs, the other half in odd ones, so each is seen both ways
            every two epochs).
        translate: the largest shift, in pixels (in steps for series).
        cutout: the side of one erased square per image, the length of one erased
            window per series (0: none).
        epoch: an integer `tf.Variable` the caller sets as each epoch begins (`train`
            does, so a resumed run continues the epochs' draws); without it the passes
            are counted from 0.

    Example:
    >>> import numpy as np
    >>> from keras_residual.data import CIFAR10_CLASSES
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
    default = data.augmentation
    if default is None:  # a Dataset made by hand: the named set's
        default = DATASETS.get(data.name, {}).get("augmentation", {})
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
