"""`PatchWhitening`: a first layer whose filters whiten the data's image patches."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_residual import _checks
from keras_residual.resize import Resize

ADAPT_IMAGES = 5000  # the images `PatchWhitening.adapt` uses, at most

PADDINGS = ("valid", "same")


@keras.saving.register_keras_serializable(package="keras_residual")
class PatchWhitening(keras.layers.Layer):
    """A fixed convolution that whitens `kernel_size` x `kernel_size` patches, plus a bias.

    `adapt(images)` sets the filters from the data (Keras's convention for data-dependent
    layers, as `Normalization.adapt`): the eigenvectors of the patch covariance, each
    scaled by `1 / sqrt(eigenvalue + epsilon)`, and their negatives, so the outputs are
    decorrelated with unit variance and a ReLU after the layer loses nothing. This is the
    first layer of the CIFAR-10 speed records (Page's ResNet-9 follow-ups, hlb-CIFAR10,
    airbench). The filters do not train; the bias does. Before `adapt` the filters are a
    fixed orthogonal projection (seeded), so `is_adapted` tells whether they were set from
    data. Output channels: `2 * kernel_size**2 * channels`.

    Args:
        kernel_size: patch size.
        epsilon: added to each eigenvalue; limits the gain of near-constant directions.
        padding: `"valid"` (as the records) or `"same"`.

    Example:
    >>> import numpy as np
    >>> layer = PatchWhitening(kernel_size=2)
    >>> images = np.random.default_rng(0).normal(size=(64, 8, 8, 3)).astype("float32")
    >>> layer.adapt(images)
    >>> tuple(layer(images).shape), layer.is_adapted
    ((64, 7, 7, 24), True)
    """

    def __init__(self, kernel_size: int = 2, epsilon: float = 5e-4, padding="valid", **kwargs):
        super().__init__(**kwargs)
        self.kernel_size = _checks.positive_int("kernel_size", kernel_size)
        self.epsilon = _checks.positive("epsilon", epsilon)
        self.padding = _checks.choice("padding", padding, PADDINGS)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError("PatchWhitening needs a known channel count.")
        size = self.kernel_size**2 * channels
        self.kernel = self.add_weight(
            shape=(self.kernel_size, self.kernel_size, channels, 2 * size),
            initializer=_OrthogonalPairs(),
            trainable=False,
            name="kernel",
        )
        self.bias = self.add_weight(shape=(2 * size,), initializer="zeros", name="bias")

    def adapt(self, images, max_images: int = ADAPT_IMAGES) -> None:
        """Set the filters from `images` (NHWC, as the model sees them; up to
        `max_images` are used)."""
        images = np.asarray(ops.convert_to_numpy(images), dtype="float64")[:max_images]
        if images.ndim != 4 or len(images) == 0:
            raise ValueError(f"`images` must be a non-empty NHWC batch, got shape {images.shape}.")
        if not self.built:
            self.build(images.shape)
        k = self.kernel_size
        patches = np.lib.stride_tricks.sliding_window_view(images, (k, k), axis=(1, 2))
        patches = patches.transpose(0, 1, 2, 4, 5, 3).reshape(-1, k * k * images.shape[-1])
        eigenvalues, eigenvectors = np.linalg.eigh(patches.T @ patches / len(patches))
        filters = eigenvectors / np.sqrt(np.maximum(eigenvalues, 0.0) + self.epsilon)
        kernel = np.concatenate([filters, -filters], axis=1)
        self.kernel.assign(kernel.reshape(self.kernel.shape).astype("float32"))

    @property
    def is_adapted(self) -> bool:
        """Whether the filters were set from data: by `adapt`, or loaded from a network
        whose filters were (they are no longer the initial projection)."""
        if not self.built:
            return False
        initial = _OrthogonalPairs()(self.kernel.shape, dtype=self.kernel.dtype)
        return not np.array_equal(ops.convert_to_numpy(self.kernel), ops.convert_to_numpy(initial))

    def call(self, inputs):
        return ops.conv(inputs, self.kernel, padding=self.padding) + self.bias

    def compute_output_shape(self, input_shape):
        height, width = input_shape[1:3]
        if self.padding == "valid":
            height, width = (
                None if d is None else d - self.kernel_size + 1 for d in (height, width)
            )
        return (input_shape[0], height, width, 2 * self.kernel_size**2 * input_shape[-1])

    def get_config(self):
        return {
            **super().get_config(),
            "kernel_size": self.kernel_size,
            "epsilon": self.epsilon,
            "padding": self.padding,
        }


@keras.saving.register_keras_serializable(package="keras_residual")
class _OrthogonalPairs(keras.initializers.Initializer):
    """Orthogonal filters and their negatives: the layer's shape before `adapt`."""

    def __call__(self, shape, dtype=None):
        half = shape[:-1] + (shape[-1] // 2,)
        filters = keras.initializers.Orthogonal(seed=0)(half, dtype=dtype)
        return ops.concatenate([filters, -filters], axis=-1)


def whitening_layers(model: keras.Model) -> list[PatchWhitening]:
    """The `PatchWhitening` layers that take `model`'s input, as it is or resized (an
    `input_scale`'s `Resize` layer): what `adapt_whitening` sets."""
    return [layer for layer in model.layers if _before(model, layer) is not None]


def _before(model: keras.Model, layer) -> list | None:
    """For a `PatchWhitening` layer that takes `model`'s input, the layers between them
    (none, or the `Resize` layer that takes the input); else None."""
    if not isinstance(layer, PatchWhitening):
        return None
    source = model.inputs[0]
    if layer.input is source:
        return []
    resizes = [
        other
        for other in model.layers
        if isinstance(other, Resize) and other.input is source and other.output is layer.input
    ]
    return resizes or None


def adapt_whitening(model: keras.Model, images, keep_adapted: bool = False) -> list[str]:
    """`adapt` every `PatchWhitening` layer that takes `model`'s input to `images` (NHWC,
    as the model takes them: a missing channel axis of size 1 is added, as Keras's
    functional models do; resized as the model resizes them); return their names.
    `train` calls it before the first epoch with `keep_adapted`: layers set from data
    already (`is_adapted`: a network trained before, or loaded) keep their filters, which
    the layers after them learnt on (another sample of images can flip a filter's sign).

    Example:
    >>> import numpy as np
    >>> inputs = keras.Input((8, 8, 3))
    >>> model = keras.Model(inputs, PatchWhitening(name="whiten")(inputs))
    >>> adapt_whitening(model, np.random.default_rng(0).normal(size=(16, 8, 8, 3)))
    ['whiten']
    >>> adapt_whitening(model, np.zeros((16, 8, 8, 3)), keep_adapted=True)
    []
    """
    layers = [layer for layer in whitening_layers(model) if not (keep_adapted and layer.is_adapted)]
    if layers:
        images = np.asarray(ops.convert_to_numpy(images))
        expected = model.inputs[0].shape
        if images.ndim == len(expected) - 1 and expected[-1] == 1:
            images = images[..., None]
    for layer in layers:
        seen = images
        for previous in _before(model, layer):
            seen = ops.convert_to_numpy(previous(seen))
        layer.adapt(seen)
    return [layer.name for layer in layers]
