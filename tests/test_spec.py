import json

import keras
import keras_tuner
import numpy as np
import pytest

import keras_residual as kr
from keras_residual.search import ResidualHyperModel, resolve_space
from keras_residual.spec import ResNetSpec

SMALL = ResNetSpec(depths=(1, 1), filters=(8, 16), strides=(1, 2), stem_filters=8)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"depths": (1, 1, 1)}, "one entry per stage"),
        ({"depths": ()}, "`depths` must name at least one stage"),
        ({"filters": (8, 0)}, "`filters`"),
        ({"strides": "12"}, "`strides`"),
        ({"stem_filters": -1}, "`stem_filters`"),
        ({"block": "dense"}, "`block` must be one of 'basic', 'bottleneck'"),
        ({"shortcut": "pad"}, "now spelled 'A'"),
        ({"shortcut": "projection"}, "now spelled 'B'"),
        ({"shortcut": "D"}, "`shortcut` must be one of 'A', 'B', 'C', 'gated', 'none'"),
        ({"preact": "yes"}, "`preact` must be True or False"),
        ({"stride_in_1x1": "yes"}, "`stride_in_1x1`"),
        ({"se_ratio": float("nan")}, "`se_ratio`"),
        ({"use_bias": 1}, "`use_bias`"),
        ({"num_classes": 0}, "`num_classes`"),
        ({"pooling": "median"}, "`pooling`"),
        ({"logit_scale": 0.0}, "`logit_scale`"),
        ({"activation": "tanh"}, "`activation` must be one of 'relu', 'gelu', 'silu'"),
        ({"conv_init": "orthogonal"}, "`conv_init` must be one of 'he_normal', 'dirac'"),
        ({"conv_init": "dirac", "groups": 2}, "conv_init='dirac'.*groups=2"),
        ({"zero_init_residual": True, "norm": {"scale": False}}, "Norm\\(scale=False\\)"),
        ({"input_shape": (28, 28, 0)}, "`input_shape`"),
        ({"input_shape": (28, 28, None)}, "`input_shape`"),
        ({"input_shape": ("28", 28, 1)}, "`input_shape`"),
        ({"input_shape": (1, 1, 3)}, "too small"),
        ({"input_scale": 0}, "`input_scale` must be a finite number > 0"),
        ({"input_scale": "half"}, "`input_scale`"),
        ({"input_scale": 0.5, "input_shape": (64, 1)}, "`input_scale` resizes images"),
        ({"input_scale": 0.5, "input_shape": (None, None, 3)}, "`input_scale` resizes images"),
        ({"input_scale": 0.05, "input_shape": (16, 16, 3)}, "too small.*`input_scale` 0.05"),
        ({"norm": {"momentum": 0.9, "epsilon": 1e-3}}, None),  # a dict becomes a Norm
        ({"stem_filter": 8}, "no field 'stem_filter'.*Did you mean stem_filters"),
    ],
)
def test_spec_validation_names_the_field(changes, message):
    if message is None:
        assert SMALL.replace(**changes) == SMALL
        return
    with pytest.raises(ValueError, match=message):
        SMALL.replace(**changes)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"epsilon": -1e-3}, "`epsilon`"),
        ({"epsilon": float("inf")}, "`epsilon`"),
        ({"momentum": 1.0}, "`momentum`"),
        ({"scale": "no"}, "`scale`"),
    ],
)
def test_norm_settings_are_validated(arguments, message):
    with pytest.raises(ValueError, match=message):
        kr.Norm(**arguments)


def test_a_norm_without_scale_builds_norms_with_shifts_only():
    # Pre-activation zero-init zeroes the last conv, not a scale: allowed without scales.
    spec = SMALL.replace(norm=kr.Norm(scale=False), preact=True, zero_init_residual=True)
    model = kr.build_network(spec)
    names = {w.name for w in model.weights}
    assert "beta" in names and "gamma" not in names
    assert kr.spec_from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


@pytest.mark.parametrize(
    "spec",
    [
        SMALL.replace(downsample="pool", depths=(1, 0)),
        kr.DenseNetSpec(depths=(2, 2), growth_rate=4, stem_filters=8),
    ],
    ids=["resnet", "densenet"],
)
def test_the_activation_reaches_every_hidden_layer(spec):
    model = kr.build_network(spec.replace(activation="gelu", input_shape=(16, 16, 3)))
    activations = [layer for layer in model.layers if isinstance(layer, keras.layers.Activation)]
    hidden = [layer.name for layer in activations if layer.name != "predictions"]
    assert hidden and all(name.endswith("_gelu") for name in hidden), hidden
    blocks = [layer for layer in model.layers if isinstance(layer, kr.BasicBlock | kr.DenseBlock)]
    assert blocks and all(layer.activation == "gelu" for layer in blocks)
    # GELU passes part of a negative input through, which ReLU would zero.
    negative = keras.ops.convert_to_numpy(activations[0](-np.ones((1, 2))))
    np.testing.assert_allclose(negative, -0.1587, atol=1e-4)
    relu = kr.build_network(spec.replace(input_shape=(16, 16, 3)))
    assert [layer.name for layer in relu.layers if layer.name.endswith("_relu")]
    assert relu.count_params() == model.count_params()


def test_a_preset_spec_prints_changes_and_builds():
    spec = kr.get_spec("resnet56")
    printed = str(spec)
    assert "depths=(9, 9, 9)" in printed and "shortcut='A'" in printed
    changed = spec.replace(shortcut="B", input_shape=(28, 28, 1))
    assert spec.shortcut == "A"  # frozen: the preset is untouched
    model = kr.build_network(changed)
    assert model.name == "resnet56"
    assert isinstance(model.get_layer("stage2_block1").shortcut_layer, kr.ProjectionShortcut)


@pytest.mark.parametrize("name", kr.list_presets())
def test_every_preset_spec_round_trips_through_json(name):
    spec = kr.get_spec(name)
    assert kr.spec_from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_family_functions_and_presets_produce_the_same_specs():
    assert kr.resnet_cifar_spec(56, shortcut="A", name="resnet56") == kr.get_spec("resnet56")
    assert kr.wide_resnet_spec(28, 10, 0.3, name="wrn28_10") == kr.get_spec("wrn28_10")
    compat = kr.keras_applications_compatible(kr.resnet_spec(50, name="resnet50_keras"))
    assert compat == kr.get_spec("resnet50_keras")


def _shortcut_layers(model):
    blocks = [layer for layer in model.layers if isinstance(layer, kr.ResidualBlock)]
    return [(type(b.shortcut_layer).__name__, b.gate is not None) for b in blocks]


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("A", [("NoneType", False), ("IdentityShortcut", False)]),
        ("B", [("NoneType", False), ("ProjectionShortcut", False)]),
        ("C", [("ProjectionShortcut", False), ("ProjectionShortcut", False)]),
        ("gated", [("NoneType", True), ("ProjectionShortcut", True)]),
        ("none", [("NoneType", False), ("NoneType", False)]),
    ],
)
def test_one_shortcut_vocabulary_in_spec_builder_block_and_search(option, expected):
    assert option in kr.SHORTCUTS
    spec = SMALL.replace(shortcut=option, input_shape=(8, 8, 1))
    # The same word means the same structure in a spec, a family function and a block.
    assert _shortcut_layers(kr.build_network(spec)) == expected
    family = kr.resnet_cifar(6, (8, 8, 1), stages=2, width=8, shortcut=option)
    assert _shortcut_layers(family) == expected
    inputs = keras.Input((8, 8, 8))
    block = kr.BasicBlock(16, strides=2, shortcut=option)
    block(inputs)
    assert [(type(block.shortcut_layer).__name__, block.gate is not None)] == expected[1:]
    if option != "none":  # every searchable option is spelled the same in a search space
        space = resolve_space("mnist", shortcut=option, stages=2, width=8, blocks_per_stage=1)
        hypermodel = ResidualHyperModel((8, 8, 1), 10, space=space)
        assert hypermodel.spec(keras_tuner.HyperParameters()).shortcut == option


def test_preact_is_a_flag_everywhere():
    assert kr.get_spec("preact_resnet110").preact is True
    assert kr.BasicBlock(8, preact=True).preact is True
    space = resolve_space("cifar10", preact=[False, True], block=["basic", "bottleneck"])
    hypermodel = ResidualHyperModel((32, 32, 3), 10, space=space)
    hp = keras_tuner.HyperParameters()
    hypermodel.declare(hp)
    declared = {hyperparameter.name: hyperparameter for hyperparameter in hp.space}
    assert declared["preact"].values == [False, True]
    assert declared["block"].values == ["basic", "bottleneck"]


def test_the_cifar_space_searches_the_speed_familys_regime():
    hypermodel = ResidualHyperModel((32, 32, 3), 10, width=128, blocks_per_stage=1, se=False)
    spec = hypermodel.spec(keras_tuner.HyperParameters())
    assert (spec.stem, spec.downsample, spec.strides) == ("whiten", "pool", (2, 2, 2))
    assert spec.filters == (128, 256, 512) and spec.name == "resnet8_w128_pool"
    model = hypermodel.build(keras_tuner.HyperParameters())
    assert model.get_layer("stage3_pool").output.shape == (None, 3, 3, 512)
    recipe = hypermodel.recipe_for(keras_tuner.HyperParameters())
    assert hypermodel.recipe == "airbench" and recipe == kr.get_recipe("airbench")  # unchanged
    strided = ResidualHyperModel((32, 32, 3), 10, downsample="stride", width=32)
    spec = strided.spec(keras_tuner.HyperParameters())
    assert (spec.stem, spec.downsample, spec.strides) == ("cifar", "stride", (1, 2, 2))
    assert ResidualHyperModel((28, 28, 1), 10).recipe == "fast"


def test_constraints_look_at_the_smallest_network_of_each_downsampling():
    small = {"width": 32, "blocks_per_stage": 1, "se": False}
    both = {"downsample": ["pool", "stride"], **small}
    # pooling: 0.49M parameters (the entry convs), striding: 0.31M
    ResidualHyperModel((32, 32, 3), 10, max_params=400_000, **both)
    with pytest.raises(ValueError, match="resnet8_w32_pool has .*; resnet8_w32 has"):
        ResidualHyperModel((32, 32, 3), 10, max_params=200_000, **both)
    with pytest.raises(ValueError, match="resnet8_w32_pool has"):
        ResidualHyperModel((32, 32, 3), 10, max_params=400_000, **small)


def test_search_samples_specs_without_a_depth_round_trip():
    hypermodel = ResidualHyperModel(
        (28, 28, 1), 10, blocks_per_stage=2, width=8, block="bottleneck"
    )
    spec = hypermodel.spec(keras_tuner.HyperParameters())
    assert spec.depths == (2, 2, 2) and spec.block == "bottleneck" and spec.filters == (8, 16, 32)
    model = hypermodel.build(keras_tuner.HyperParameters())
    assert model.count_params() == kr.build_network(spec).count_params()


def test_the_search_trains_with_the_named_recipe_and_the_trial_values():
    hypermodel = ResidualHyperModel((28, 28, 1), 10, weight_decay=1e-4, batch_size=64)
    recipe = hypermodel.recipe_for(keras_tuner.HyperParameters())
    fast = kr.RECIPES["fast"]
    assert (recipe.schedule, recipe.warmup_epochs) == (fast.schedule, fast.warmup_epochs)
    assert (recipe.weight_decay, recipe.batch_size, recipe.reference_batch) == (1e-4, 64, 64)


def test_scaled_keeps_structure_and_groups():
    spec = kr.get_spec("resnext29_8x64d").scaled(0.25)
    assert spec.filters == (16, 32, 64) and spec.depths == (3, 3, 3)
    assert all(f % spec.groups == 0 for f in spec.filters)
    with pytest.raises(ValueError, match="`multiplier`"):
        spec.scaled(0)


@pytest.mark.parametrize(
    "layer",
    [
        kr.BasicBlock(8),
        kr.BottleneckBlock(4),
        kr.IdentityShortcut(),
        kr.ProjectionShortcut(8),
        kr.SqueezeExcite(0.5),
    ],
    ids=lambda layer: type(layer).__name__,
)
def test_wrong_rank_input_fails_at_the_layer_naming_the_rank(layer):
    """The rank-generic layers take sequences, images and volumes, nothing flatter or deeper."""
    with pytest.raises(ValueError, match="expected min_ndim=3, found ndim=2"):
        layer(np.ones((2, 8), "float32"))
    with pytest.raises(ValueError, match="expected max_ndim=5, found ndim=6"):
        layer(np.ones((2, 2, 4, 4, 4, 8), "float32"))


@pytest.mark.parametrize(
    "layer", [kr.DenseBlock(1, growth_rate=4), kr.Transition()], ids=lambda x: type(x).__name__
)
def test_dense_layers_take_images_only(layer):
    with pytest.raises(ValueError, match="expected ndim=4, found ndim=3"):
        layer(np.ones((2, 4, 8), "float32"))


def test_gated_shortcut_checks_both_inputs_match():
    with pytest.raises(ValueError, match="equal shapes"):
        kr.GatedShortcut()([np.ones((1, 4, 4, 8), "float32"), np.ones((1, 4, 8), "float32")])


def test_branch_layers_name_the_steps():
    block = kr.BottleneckBlock(4, preact=True, se_ratio=0.5, name="b")
    block(np.ones((1, 4, 4, 16), "float32"))
    steps = block.branch_layers()
    assert list(steps) == ["preact_bn", "conv1", "bn1", "conv2", "bn2", "conv3", "se"]
    assert steps["conv2"].kernel_size == (3, 3) and steps["conv3"].filters == 16
    assert [s.kernel_size for s in block.branch_steps()] == [1, 3, 1]
