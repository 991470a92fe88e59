"""keras_residual: residual networks for Keras 3 — layers, builders, data, search.

Layers, specs and builders load with the package and run on every Keras backend; the
TensorFlow-only parts (data pipelines, training, diagnostics, FLOPs, export) load on first
use, so `KERAS_BACKEND=jax` or `torch` never imports TensorFlow for a model.
"""

import importlib
import importlib.util

from keras_residual import _started  # noqa: F401  (first: when the toolkit began to load)
from keras_residual.ensembles import ensemble
from keras_residual.fast_cifar import FAST_CIFAR_SIZES, fast_cifar, fast_cifar_spec
from keras_residual.initializers import Dirac
from keras_residual.layers import (
    BasicBlock,
    BottleneckBlock,
    DenseBlock,
    DropPath,
    FusedBatchNormalization,
    GatedShortcut,
    IdentityShortcut,
    PatchWhitening,
    ProjectionShortcut,
    Residual,
    ResidualBlock,
    Resize,
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
    resnet_series,
    resnet_series_spec,
    resnet_spec,
    resnext,
    resnext_spec,
    tcn,
    tcn_spec,
    wide_resnet,
    wide_resnet_spec,
)
from keras_residual.network import build_network
from keras_residual.porting import port_keras_applications_weights
from keras_residual.precision import resolve_dtype
from keras_residual.presets import (
    PresetInfo,
    build,
    default_recipe,
    get_spec,
    list_presets,
    preset_info,
)
from keras_residual.spec import SHORTCUTS, DenseNetSpec, Norm, ResNetSpec, spec_from_dict
from keras_residual.techniques import (
    Lookahead,
    MuonSGD,
    OneCycle,
    RateScaledSGD,
    predict_with_tta,
    tta_views,
)
from keras_residual.whitening import adapt_whitening

__version__ = "0.3.0"

# TensorFlow-only parts, imported on first use: name -> module.
_LAZY = {
    **dict.fromkeys(("DataError", "Dataset", "load_dataset", "make_pipeline"), "data"),
    **dict.fromkeys(
        (
            "DegradationResult",
            "degradation_experiment",
            "gradient_norms",
            "plot_degradation",
            "plot_gradient_flow",
        ),
        "diagnostics",
    ),
    "count_flops": "flops",
    **dict.fromkeys(("load_arrays", "load_image_folder", "load_series"), "data"),
    "export": "exporting",
    **dict.fromkeys(
        (
            "RECIPES",
            "Recipe",
            "RunFinished",
            "ScheduleOverTime",
            "TrainingDiverged",
            "evaluate",
            "fit_with_recipe",
            "freeze_norm_scales",
            "get_recipe",
            "make_optimizer",
            "train",
        ),
        "training",
    ),
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f"keras_residual.{_LAZY[name]}"), name)
    elif importlib.util.find_spec(f"keras_residual.{name}") is not None:  # a submodule
        value = importlib.import_module(f"keras_residual.{name}")
    else:
        raise AttributeError(f"module 'keras_residual' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "BasicBlock",
    "BottleneckBlock",
    "DataError",
    "Dataset",
    "DegradationResult",
    "DenseBlock",
    "DenseNetSpec",
    "Dirac",
    "DropPath",
    "FAST_CIFAR_SIZES",
    "FusedBatchNormalization",
    "GatedShortcut",
    "IdentityShortcut",
    "Norm",
    "Lookahead",
    "OneCycle",
    "PresetInfo",
    "MuonSGD",
    "RateScaledSGD",
    "PatchWhitening",
    "ProjectionShortcut",
    "RECIPES",
    "Recipe",
    "ResNetSpec",
    "Residual",
    "ResidualBlock",
    "Resize",
    "RunFinished",
    "SHORTCUTS",
    "ScheduleOverTime",
    "SqueezeExcite",
    "TrainingDiverged",
    "Transition",
    "adapt_whitening",
    "build",
    "build_network",
    "count_flops",
    "default_recipe",
    "degradation_experiment",
    "densenet",
    "densenet_spec",
    "ensemble",
    "evaluate",
    "export",
    "fast_cifar",
    "fast_cifar_spec",
    "fit_with_recipe",
    "get_recipe",
    "get_spec",
    "gradient_norms",
    "highway",
    "highway_spec",
    "keras_applications_compatible",
    "list_presets",
    "load_arrays",
    "load_dataset",
    "load_image_folder",
    "load_series",
    "make_optimizer",
    "make_pipeline",
    "plot_degradation",
    "plot_gradient_flow",
    "port_keras_applications_weights",
    "preset_info",
    "predict_with_tta",
    "resnet",
    "resnet_cifar",
    "resnet_cifar_spec",
    "resnet_series",
    "resnet_series_spec",
    "resnet_spec",
    "resnext",
    "resnext_spec",
    "resolve_dtype",
    "spec_from_dict",
    "train",
    "tcn",
    "tcn_spec",
    "tta_views",
    "wide_resnet",
    "wide_resnet_spec",
]
