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
from keras_residual.models import (
    densenet,
    densenet_spec,
    highway,
    highway_spec,
    keras_applications_compatible,
    resnet,
    resnet_cifar,
    resnet_cifar_spec,
    resnet_spec,
    resnext,
    resnext_spec,
    wide_resnet,
    wide_resnet_spec,
)
from keras_residual.network import build_network
from keras_residual.porting import port_keras_applications_weights
from keras_residual.precision import resolve_dtype
from keras_residual.presets import build, get_spec, list_presets
from keras_residual.spec import SHORTCUTS, DenseNetSpec, Norm, ResNetSpec, spec_from_dict
from keras_residual.training import RECIPES, Recipe, evaluate, get_recipe, make_optimizer, train

__version__ = "0.2.0"

__all__ = [
    "BasicBlock",
    "BottleneckBlock",
    "DataError",
    "Dataset",
    "DegradationResult",
    "DenseBlock",
    "DenseNetSpec",
    "DropPath",
    "FusedBatchNormalization",
    "GatedShortcut",
    "IdentityShortcut",
    "Norm",
    "ProjectionShortcut",
    "RECIPES",
    "Recipe",
    "ResNetSpec",
    "ResidualBlock",
    "SHORTCUTS",
    "SqueezeExcite",
    "Transition",
    "build",
    "build_network",
    "count_flops",
    "degradation_experiment",
    "densenet",
    "densenet_spec",
    "evaluate",
    "get_recipe",
    "get_spec",
    "gradient_norms",
    "highway",
    "highway_spec",
    "keras_applications_compatible",
    "list_presets",
    "load_dataset",
    "make_optimizer",
    "make_pipeline",
    "plot_degradation",
    "plot_gradient_flow",
    "port_keras_applications_weights",
    "resnet",
    "resnet_cifar",
    "resnet_cifar_spec",
    "resnet_spec",
    "resnext",
    "resnext_spec",
    "resolve_dtype",
    "spec_from_dict",
    "train",
    "wide_resnet",
    "wide_resnet_spec",
]
