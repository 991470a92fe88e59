"""Forward-pass FLOPs of a Keras model, counted by TensorFlow's graph profiler."""

from __future__ import annotations

import keras
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import (
    convert_variables_to_constants_v2,
)
from tensorflow.python.util import deprecation


def count_flops(model: keras.Model) -> int:
    """Floating-point operations of one inference forward pass on a single image.

    A multiply-add counts as two operations (ResNet-20 at 32x32: about 82 million).

    Example:
    >>> from keras_residual import resnet_cifar
    >>> round(count_flops(resnet_cifar(20)) / 1e6)
    82
    """
    spec = tf.TensorSpec((1, *model.input_shape[1:]), tf.float32)
    function = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    graph = convert_variables_to_constants_v2(function).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    with deprecation.silence():  # the v1 profiler's own deprecation notices
        profile = tf.compat.v1.profiler.profile(graph=graph, options=options)
    return int(profile.total_float_ops)
