"""`Resize`: a network's first layer at an `input_scale`, images resized to its size."""

from __future__ import annotations

import keras
from keras import ops

from keras_residual import _checks


@keras.saving.register_keras_serializable(package="keras_residual")
class Resize(keras.layers.Layer):
    """Resizes images (NHWC) to `height` x `width`, bilinear: what `input_scale` puts
    before a network's stem.

    `keras.layers.Resizing` is a preprocessing layer whose `training` argument defaults to
    True: first in a model called without `training` (`model(x)`, or as `model.export`
    traces it), it sets training for the layers after it, and batch norm then normalises by
    the batch and updates its moving statistics. This layer takes no `training`.

    Args:
        height, width: the output size.

    Example:
    >>> import numpy as np
    >>> Resize(2, 3)(np.ones((1, 4, 6, 1), "float32")).shape
    TensorShape([1, 2, 3, 1])
    """

    def __init__(self, height: int, width: int, **kwargs):
        super().__init__(**kwargs)
        self.height = _checks.positive_int("height", height)
        self.width = _checks.positive_int("width", width)
        self.input_spec = keras.InputSpec(ndim=4)

    def call(self, inputs):
        return ops.image.resize(inputs, (self.height, self.width), interpolation="bilinear")

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.height, self.width, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width}
