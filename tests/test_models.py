import keras
import numpy as np
import pytest
from conftest import assert_same_outputs, shrunk

import keras_residual as kr


def trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.mark.parametrize(
    ("depth", "millions"), [(20, 0.27), (32, 0.46), (44, 0.66), (56, 0.85), (110, 1.7)]
)
def test_cifar_resnet_option_a_matches_the_paper(depth, millions):
    model = kr.resnet_cifar(depth, shortcut="A")
    assert round(trainable(model) / 1e6, 2 if depth < 110 else 1) == millions


@pytest.mark.parametrize(
    ("depth", "count"),
    [
        (18, 11_689_512),
        (34, 21_797_672),
        (50, 25_557_032),
        (101, 44_549_160),
        (152, 60_192_808),
    ],
)
def test_imagenet_resnets_match_torchvision(depth, count):
    assert trainable(kr.resnet(depth)) == count


@pytest.mark.parametrize(("preact", "count"), [(False, 25_636_712), (True, 25_613_800)])
def test_keras_compatible_variant_matches_keras_applications(preact, count):
    assert kr.resnet(50, keras_compat=True, preact=preact).count_params() == count


@pytest.mark.parametrize(
    ("name", "millions", "places"),
    [("wrn28_10", 36.5, 1), ("resnext29_8x64d", 34.4, 1), ("densenet_bc100_k12", 0.8, 1)],
)
def test_wide_resnext_densenet_sizes(name, millions, places):
    assert round(trainable(kr.build(name)) / 1e6, places) == millions


@pytest.mark.parametrize(
    ("application", "preact"),
    [(keras.applications.ResNet50, False), (keras.applications.ResNet50V2, True)],
)
def test_ported_keras_applications_weights_give_the_same_outputs(application, preact):
    shape = (64, 64, 3)
    source = application(weights=None, input_shape=shape, classes=7, classifier_activation=None)
    rng = np.random.default_rng(1)
    for weight in source.weights:  # non-trivial BN statistics, so misplaced norms show
        if "moving_mean" in weight.path or "beta" in weight.path:
            weight.assign(rng.normal(0, 0.1, weight.shape))
        elif "moving_variance" in weight.path or "gamma" in weight.path:
            weight.assign(rng.uniform(0.5, 1.5, weight.shape))
    target = kr.resnet(50, shape, 7, keras_compat=True, preact=preact, classifier_activation=None)
    kr.port_keras_applications_weights(source, target)
    x = rng.random((2, *shape), dtype="float32")
    expected = source.predict(x, verbose=0)
    assert np.abs(expected[0] - expected[1]).max() > 1e-3  # the outputs depend on x
    np.testing.assert_allclose(target.predict(x, verbose=0), expected, atol=1e-5, rtol=0)


def test_porting_into_a_different_structure_fails_clearly():
    source = keras.applications.ResNet50V2(weights=None, input_shape=(64, 64, 3), classes=7)
    target = kr.resnet(50, (64, 64, 3), 7, keras_compat=True)
    with pytest.raises(ValueError):
        kr.port_keras_applications_weights(source, target)


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110, 164])
def test_cifar_depths_build(depth):
    block = "bottleneck" if depth == 164 else "basic"
    model = kr.resnet_cifar(depth, block=block)
    per_block = 3 if block == "bottleneck" else 2
    blocks = [layer for layer in model.layers if isinstance(layer, kr.ResidualBlock)]
    assert len(blocks) == (depth - 2) // per_block
    assert model.output_shape == (None, 10)


def test_resnet1202_is_the_same_family_200_blocks_a_stage():
    """Building ResNet-1202's 600 blocks takes half a minute; its spec is what differs."""
    spec, resnet110 = kr.resnet_cifar_spec(1202), kr.resnet_cifar_spec(110)
    assert spec.depths == (200, 200, 200) and spec.name == "resnet1202"
    assert spec.replace(depths=(18, 18, 18), name="resnet110") == resnet110


def test_plain_twin_is_the_same_network_without_shortcuts():
    residual = kr.resnet_cifar(20, shortcut="B")
    plain = kr.resnet_cifar(20, plain=True)
    names = [layer.name for layer in residual.layers]
    assert names == [layer.name for layer in plain.layers]
    assert all(
        b.shortcut_layer is None and b.gate is None
        for b in plain.layers
        if isinstance(b, kr.ResidualBlock)
    )
    # Only the two stage-entry projections differ.
    assert trainable(residual) - trainable(plain) == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)


def test_layer_names_are_stable_and_meaningful():
    model = kr.build("resnet20")
    block = model.get_layer("stage2_block1")
    assert block.convs[0].name == "stage2_block1_conv1"
    assert block.shortcut_layer.name == "stage2_block1_shortcut"
    assert [layer.name for layer in model.layers[:4]] == [
        "inputs",
        "stem_conv",
        "stem_bn",
        "stem_relu",
    ]
    assert model.layers[-1].name == "predictions"


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3)])
def test_small_inputs_for_cifar_models(shape):
    model = kr.build("resnet20", input_shape=shape)
    y = model.predict(np.zeros((3, *shape), "float32"), verbose=0)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)


def test_include_top_and_pooling_like_keras_applications():
    assert kr.resnet_cifar(20, include_top=False, pooling=None).output_shape == (None, 8, 8, 64)
    assert kr.resnet_cifar(20, include_top=False, pooling="max").output_shape == (None, 64)
    assert kr.resnet(18, (64, 64, 3), include_top=False).output_shape == (None, 512)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: kr.resnet_cifar(21), r"`depth` must be 6n\+2"),
        (lambda: kr.resnet_cifar(32, block="bottleneck"), r"`depth` must be 9n\+2"),
        (lambda: kr.resnet_cifar(20, input_shape=(3, 3, 3)), "too small"),
        (lambda: kr.resnet(50, input_shape=(16, 16, 3)), "at least 32 pixels per side"),
        (lambda: kr.resnet(42), "`depth` must be one of"),
        (lambda: kr.resnet_cifar(20, input_shape=(32,)), "`input_shape`"),
        (lambda: kr.resnet_cifar(20, shortcut="magic"), "`shortcut`"),
        (lambda: kr.resnet_cifar(20, block="huge"), "`block`"),
        (lambda: kr.resnet_cifar(20, pooling="median"), "`pooling`"),
        (lambda: kr.resnet_cifar(20, num_classes=0), "`num_classes`"),
        (lambda: kr.resnet_cifar(20, width=0), "`width`"),
        (lambda: kr.wide_resnet(26), r"6n\+4"),
        (lambda: kr.densenet(101), r"`depth` must be 6n\+4"),
        (lambda: kr.resnet(18, keras_compat=True), "keras_compat"),
    ],
)
def test_impossible_configurations_raise(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_unknown_preset_lists_close_matches():
    with pytest.raises(ValueError, match="resnet56"):
        kr.build("resnet65")


def test_presets_are_data_and_overrides_apply():
    names = kr.list_presets()
    for name in ["resnet20", "resnet56", "resnet110", "preact_resnet164", "wrn28_10"]:
        assert name in names
    for name in ["resnext29_8x64d", "densenet_bc100_k12", "resnet18", "resnet50", "plain20"]:
        assert name in names
    spec = kr.get_spec("resnet56").scaled(0.5).replace(input_shape=(28, 28, 1), num_classes=5)
    model = kr.build_network(spec)
    assert model.output_shape == (None, 5)
    assert model.get_layer("stem_conv").filters == 8
    assert kr.build("resnet56", se_ratio=0.25).get_layer("stage1_block1").se_ratio == 0.25


def test_drop_path_grows_linearly_with_depth():
    model = kr.resnet_cifar(20, drop_path_rate=0.2)
    rates = [b.drop_path_rate for b in model.layers if isinstance(b, kr.ResidualBlock)]
    np.testing.assert_allclose(rates, np.linspace(0, 0.2, 9))


@pytest.mark.parametrize("name", kr.list_presets())
def test_every_preset_round_trips_through_keras_files(name, tmp_path):
    # Two blocks a stage (test_cifar_depths_build builds the 1,202 layers' depth).
    model = kr.build_network(shrunk(name, widest=64))
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    x = np.random.default_rng(0).random((2, *model.input_shape[1:]), dtype="float32")
    assert_same_outputs(model, loaded, x)


@pytest.mark.parametrize("groups", [1, 4])
def test_count_flops_includes_grouped_convolutions(groups):
    inputs = keras.Input((8, 8, 16))
    conv = keras.layers.Conv2D(16, 3, groups=groups, padding="same", use_bias=False)
    model = keras.Model(inputs, conv(inputs))
    assert kr.count_flops(model) == 2 * 8 * 8 * 3 * 3 * (16 // groups) * 16
