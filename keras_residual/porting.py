"""Copy `keras.applications` ResNet weights into the toolkit's compatible models."""

from __future__ import annotations

import re

import keras

# keras.applications names: conv{stage+1}_block{b}_{i}_{conv|bn}, _0_ is the shortcut.
_BLOCK_LAYER = re.compile(r"conv(\d)_block(\d+)_(\d|preact)_?(conv|bn)?$")
_TOP_LEVEL = {"conv1_conv": "stem_conv", "conv1_bn": "stem_bn", "post_bn": "post_bn"}


def _target_layer(target: keras.Model, source_name: str):
    if source_name in _TOP_LEVEL:
        return target.get_layer(_TOP_LEVEL[source_name])
    if source_name == "predictions":
        return target.get_layer("predictions")
    match = _BLOCK_LAYER.match(source_name)
    if match is None:
        raise ValueError(f"No counterpart for keras.applications layer {source_name!r}.")
    stage, block, part, kind = match.groups()
    layer = target.get_layer(f"stage{int(stage) - 1}_block{block}")
    if part == "0":  # the shortcut
        return getattr(layer.shortcut_layer, kind, None)
    return layer.branch_layers().get("preact_bn" if part == "preact" else f"{kind}{part}")


def port_keras_applications_weights(source: keras.Model, target: keras.Model) -> keras.Model:
    """Copy the weights of `keras.applications.ResNet50/101/152(V2)` into `target`.

    `target` is the matching `resnet(depth, keras_compat=True, preact=...)` with the same
    input shape and head. Returns `target`.

    Example:
    >>> from keras_residual.models import resnet
    >>> src = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=10)
    >>> dst = resnet(50, (64, 64, 3), 10, keras_compat=True)
    >>> port_keras_applications_weights(src, dst).name
    'resnet50'
    """
    copied = 0
    for layer in source.layers:
        if not layer.weights:
            continue
        destination = _target_layer(target, layer.name)
        if destination is None:
            raise ValueError(
                f"The target has no counterpart for {layer.name!r}: port ResNet*V2 into "
                "`resnet(..., keras_compat=True, preact=True)` and ResNet* into preact=False."
            )
        destination.set_weights(layer.get_weights())
        copied += len(layer.weights)
    if copied != len(target.weights):
        raise ValueError(
            f"Copied {copied} of the target's {len(target.weights)} weights: the two models "
            "differ in structure (depth, v1/v2 or head)."
        )
    return target
