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
]
