"""keras_residual: residual networks for Keras 3 — layers, builders, data, search."""

from keras_residual.layers import (
    BasicBlock,
    BottleneckBlock,
    DenseBlock,
    DropPath,
    GatedShortcut,
    IdentityShortcut,
    ProjectionShortcut,
    ResidualBlock,
    SqueezeExcite,
    Transition,
)
from keras_residual.models import densenet, highway, resnet, resnet_cifar, resnext, wide_resnet
from keras_residual.porting import port_keras_applications_weights
from keras_residual.presets import build, list_presets

__version__ = "0.1.0"

__all__ = [
    "BasicBlock",
    "BottleneckBlock",
    "DenseBlock",
    "DropPath",
    "GatedShortcut",
    "IdentityShortcut",
    "ProjectionShortcut",
    "ResidualBlock",
    "SqueezeExcite",
    "Transition",
    "build",
    "densenet",
    "highway",
    "list_presets",
    "port_keras_applications_weights",
    "resnet",
    "resnet_cifar",
    "resnext",
    "wide_resnet",
]
