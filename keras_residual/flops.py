"""Forward-pass FLOPs of a Keras model, counted by TensorFlow's graph profiler."""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_residual import _thirdparty

_CALLS = ("PartitionedCall", "StatefulPartitionedCall")


def count_flops(model: keras.Model) -> int:
    """Floating-point operations of one inference forward pass on a single image.

    A multiply-add counts as two operations (ResNet-20 at 32x32: about 82 million).
    Operations that Keras runs as separate compiled functions (grouped convolutions
    on CPU) are counted inside those functions.

    Example:
    >>> from keras_residual import resnet_cifar
    >>> round(count_flops(resnet_cifar(20)) / 1e6)
    82
    """
    spec = tf.TensorSpec((1, *model.input_shape[1:]), tf.float32)
    function = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    return _graph_flops(function.graph)


def _graph_flops(graph) -> int:
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    with _thirdparty.silence_tensorflow_deprecations():
        total = tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops
    for op in graph.get_operations():
        if op.type in _CALLS:  # the profiler does not look inside function calls
            total += _graph_flops(_thirdparty.called_function_graph(graph, op))
    return int(total)
