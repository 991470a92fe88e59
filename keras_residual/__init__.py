"""keras_residual: residual networks for Keras 3 — layers, builders, data, search."""

from keras_residual.data import DataError, Dataset, load_dataset, make_pipeline
from keras_residual.diagnostics import (
    DegradationResult,
    degradation_experiment,
    gradient_norms,
    plot_degradation,
    plot_gradient_flow,
)
from keras_residual.flops import count_flops
from keras_residual.layers import (
    BasicBlock,
    BottleneckBlock,
    DenseBlock,
    DropPath,
    FusedBatchNormalization,
    GatedShortcut,
    IdentityShortcut,
    ProjectionShortcut,
    ResidualBlock,
    SqueezeExcite,
    Transition,
)
from keras_residual.models import densenet, highway, resnet, resnet_cifar, resnext, wide_resnet
from keras_residual.porting import port_keras_applications_weights
from keras_residual.precision import default_dtype_policy
from keras_residual.presets import build, list_presets
from keras_residual.training import RECIPES, Recipe, evaluate, get_recipe, make_optimizer, train

__version__ = "0.1.0"

__all__ = [
    "BasicBlock",
    "BottleneckBlock",
    "DataError",
    "Dataset",
    "DegradationResult",
    "DenseBlock",
    "DropPath",
    "FusedBatchNormalization",
    "GatedShortcut",
    "IdentityShortcut",
    "ProjectionShortcut",
    "RECIPES",
    "Recipe",
    "ResidualBlock",
    "SqueezeExcite",
    "Transition",
    "build",
    "count_flops",
    "default_dtype_policy",
    "degradation_experiment",
    "densenet",
    "evaluate",
    "get_recipe",
    "gradient_norms",
    "highway",
    "list_presets",
    "load_dataset",
    "make_optimizer",
    "make_pipeline",
    "plot_degradation",
    "plot_gradient_flow",
    "port_keras_applications_weights",
    "resnet",
    "resnet_cifar",
    "resnext",
    "train",
    "wide_resnet",
]
