"""All layers of the toolkit in one namespace: `from keras_residual.layers import *`."""

from keras_residual.blocks import BasicBlock, BottleneckBlock, ResidualBlock
from keras_residual.dense import DenseBlock, Transition
from keras_residual.drop_path import DropPath
from keras_residual.normalization import FusedBatchNormalization
from keras_residual.residual import Residual
from keras_residual.resize import Resize
from keras_residual.shortcuts import GatedShortcut, IdentityShortcut, ProjectionShortcut
from keras_residual.squeeze_excite import SqueezeExcite
from keras_residual.whitening import PatchWhitening

__all__ = [
    "BasicBlock",
    "BottleneckBlock",
    "DenseBlock",
    "DropPath",
    "FusedBatchNormalization",
    "GatedShortcut",
    "IdentityShortcut",
    "PatchWhitening",
    "ProjectionShortcut",
    "Residual",
    "ResidualBlock",
    "Resize",
    "SqueezeExcite",
    "Transition",
]
