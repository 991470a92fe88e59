import inspect
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_residual as kr

BASE_CONFIG_KEYS = {"name", "trainable", "dtype"}

# (layer factory, input channels) covering every layer and the interesting options.
CASES = {
    "identity": (lambda: kr.IdentityShortcut(), 8),
    "identity_pad": (lambda: kr.IdentityShortcut(filters=16, strides=2, mode="pad"), 8),
    "projection": (lambda: kr.ProjectionShortcut(16, strides=2), 8),
    "projection_avg_down": (lambda: kr.ProjectionShortcut(16, strides=2, avg_down=True), 8),
    "squeeze_excite": (lambda: kr.SqueezeExcite(0.25), 8),
    "drop_path": (lambda: kr.DropPath(0.2, seed=1), 8),
    "basic": (lambda: kr.BasicBlock(8), 8),
    "basic_pad": (lambda: kr.BasicBlock(16, strides=2, shortcut="A"), 8),
    "basic_all_projection": (lambda: kr.BasicBlock(8, shortcut="C"), 8),
    "basic_preact": (lambda: kr.BasicBlock(16, strides=2, preact=True), 8),
    "basic_gated": (lambda: kr.BasicBlock(16, strides=2, shortcut="gated"), 8),
    "basic_gelu": (lambda: kr.BasicBlock(8, activation="gelu"), 8),
    "basic_plain": (lambda: kr.BasicBlock(16, strides=2, shortcut="none"), 8),
    "basic_se_droppath": (lambda: kr.BasicBlock(8, se_ratio=0.25, drop_path_rate=0.1), 8),
    "basic_dirac": (lambda: kr.BasicBlock(16, strides=2, kernel_initializer=kr.Dirac()), 8),
    "basic_no_scale": (lambda: kr.BasicBlock(16, strides=2, bn_scale=False), 8),
    "dense_no_scale": (lambda: kr.DenseBlock(2, growth_rate=4, bn_scale=False), 8),
    "wide_dropout": (lambda: kr.BasicBlock(16, preact=True, dropout_rate=0.3), 8),
    "bottleneck": (lambda: kr.BottleneckBlock(4, strides=2), 8),
    "bottleneck_preact": (lambda: kr.BottleneckBlock(4, preact=True, use_bias="auto"), 16),
    "resnext": (lambda: kr.BottleneckBlock(8, groups=4, base_width=16, stride_in_1x1=True), 8),
    "resnet_d": (lambda: kr.BottleneckBlock(4, strides=2, avg_down=True, use_bias=True), 8),
    "dense_block": (lambda: kr.DenseBlock(2, growth_rate=4, dropout_rate=0.1), 8),
    "transition": (lambda: kr.Transition(0.5), 8),
    "fused_batch_norm": (lambda: kr.FusedBatchNormalization(momentum=0.9), 8),
    "resize": (lambda: kr.Resize(6, 4), 8),
}


def _model(factory, shape):
    inputs = keras.Input(shape)
    x = keras.layers.Conv2D(shape[-1], 3, padding="same")(inputs)
    x = factory()(x)
    if len(x.shape) == 4:
        x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


def _apply(layer, x):
    if isinstance(layer, kr.GatedShortcut):
        return layer([x, x * 0.5])
    return layer(x)


@pytest.mark.parametrize("case", sorted(CASES))
def test_config_is_exactly_the_constructor_arguments(case):
    factory, channels = CASES[case]
    layer = factory()
    layer.build((None, 8, 8, channels))
    config = layer.get_config()
    params = set()
    for klass in type(layer).__mro__:
        if klass is keras.layers.Layer:
            break
        params |= {
            p.name
            for p in inspect.signature(klass.__init__).parameters.values()
            if p.kind is p.POSITIONAL_OR_KEYWORD and p.name != "self"
        }
    assert set(config) - BASE_CONFIG_KEYS == params
    clone = type(layer).from_config(config)
    assert clone.get_config() == config


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3)])
def test_keras_file_round_trip_gives_identical_outputs(case, shape, tmp_path):
    factory, _ = CASES[case]
    model = _model(factory, shape)
    x = np.random.default_rng(0).random((2, *shape), dtype="float32")
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, np.ones((2, 3)), epochs=1, verbose=0)  # moves weights and BN statistics
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))


@pytest.mark.parametrize("case", ["basic_pad", "bottleneck_preact", "resnext", "dense_block"])
@pytest.mark.parametrize("batch", [1, 5])
def test_any_batch_size(case, batch):
    factory, channels = CASES[case]
    layer = factory()
    y = layer(np.ones((batch, 9, 9, channels), "float32"), training=True)
    assert y.shape[0] == batch
    assert tuple(y.shape[1:]) == tuple(layer.compute_output_shape((batch, 9, 9, channels))[1:])


@pytest.mark.parametrize("case", sorted(CASES))
def test_mixed_float16(case):
    keras.mixed_precision.set_global_policy("mixed_float16")
    model = _model(CASES[case][0], (32, 32, 3))
    y = model(np.ones((2, 32, 32, 3), "float32"), training=True)
    assert np.isfinite(keras.ops.convert_to_numpy(y)).all()
    assert all(w.dtype == "float32" for w in model.weights if w.trainable)


@pytest.mark.parametrize(
    ("factory", "argument"),
    [
        (lambda: kr.BasicBlock(-1), "filters"),
        (lambda: kr.BasicBlock(16, strides=0), "strides"),
        (lambda: kr.BasicBlock(16, shortcut="skip"), "shortcut"),
        (lambda: kr.BasicBlock(16, groups=3), "groups"),
        (lambda: kr.BottleneckBlock(16, groups=0), "groups"),
        (lambda: kr.BottleneckBlock(4, base_width=4), "base_width"),
        (lambda: kr.BottleneckBlock(16, expansion=0), "expansion"),
        (lambda: kr.BasicBlock(16, drop_path_rate=1.0), "drop_path_rate"),
        (lambda: kr.BasicBlock(16, drop_path_rate=-0.1), "drop_path_rate"),
        (lambda: kr.BasicBlock(16, se_ratio=2), "se_ratio"),
        (lambda: kr.BasicBlock(16, dropout_rate=1), "dropout_rate"),
        (lambda: kr.BasicBlock(16, use_bias="sometimes"), "use_bias"),
        (lambda: kr.BasicBlock(16, bn_momentum=1.5), "bn_momentum"),
        (lambda: kr.BasicBlock(16, bn_scale="off"), "bn_scale"),
        (lambda: kr.BasicBlock(16, bn_scale=False, zero_init_residual=True), "zero_init_residual"),
        (lambda: kr.IdentityShortcut(mode="zeros"), "mode"),
        (lambda: kr.ProjectionShortcut(0), "filters"),
        (lambda: kr.GatedShortcut(gate_bias="low"), "gate_bias"),
        (lambda: kr.DropPath(1.0), "rate"),
        (lambda: kr.SqueezeExcite(0), "ratio"),
        (lambda: kr.DenseBlock(0), "num_layers"),
        (lambda: kr.DenseBlock(4, growth_rate=0), "growth_rate"),
        (lambda: kr.Transition(compression=1.5), "compression"),
        (lambda: kr.Resize(0, 4), "height"),
        (lambda: kr.Resize(4, 2.5), "width"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(factory, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        factory()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_gelu_matches_keras_forward_and_backward_and_keeps_the_dtype(dtype):
    from keras_residual.activations import gelu

    def both(x):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            ours, reference = gelu(x), keras.activations.gelu(x, approximate=False)
        return ours, reference, tape.gradient(ours, x), tape.gradient(reference, x)

    x = tf.cast(tf.linspace(-6.0, 6.0, 241), dtype)
    tolerance = 1e-6 if dtype == "float32" else 2e-2  # ours rounds once, from float32
    # Eagerly, and in a graph whose length is known only when it runs (XLA compiles ours then).
    in_graph = tf.function(both, input_signature=[tf.TensorSpec([None], dtype)])
    for ours, reference, our_gradient, gradient in (both(x), in_graph(x)):
        assert ours.dtype == our_gradient.dtype == x.dtype
        for a, b in ((ours, reference), (our_gradient, gradient)):
            a, b = (tf.cast(t, tf.float32).numpy() for t in (a, b))
            np.testing.assert_allclose(a, b, atol=tolerance, rtol=tolerance)


def test_gelu_called_eagerly_on_many_shapes_is_not_retraced_each_time(caplog):
    from keras_residual.activations import gelu

    for length in range(1, 9):  # a model called eagerly on batches of every size
        gelu(tf.ones((length, 4)))
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]


def test_unknown_activation_is_rejected_at_construction():
    with pytest.raises(ValueError, match="relux"):
        kr.BasicBlock(16, activation="relux")


@pytest.mark.parametrize(
    ("layer", "suggestion"),
    [
        (kr.BasicBlock(8, shortcut="A"), "shortcut='B'"),
        (kr.IdentityShortcut(filters=32), "mode='pad'"),
        (kr.IdentityShortcut(filters=8, mode="pad"), "ProjectionShortcut"),
    ],
)
def test_impossible_identity_shortcut_raises_at_build(layer, suggestion):
    with pytest.raises(ValueError, match=suggestion):
        layer(np.ones((1, 8, 8, 16), "float32"))


def test_groups_must_divide_input_channels_at_build():
    with pytest.raises(ValueError, match="`groups`=4 must divide the input channels"):
        kr.BasicBlock(8, groups=4)(np.ones((1, 8, 8, 6), "float32"))


def test_gated_shortcut_needs_equal_shapes():
    with pytest.raises(ValueError, match="equal shapes"):
        kr.GatedShortcut()([np.ones((1, 4, 4, 8)), np.ones((1, 4, 4, 4))])


@pytest.mark.parametrize(
    "shape, strides", [((2, 7, 3), 2), ((2, 7, 7, 3), 2), ((2, 8, 9, 3), 3), ((1, 5, 6, 7, 2), 2)]
)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_pad_shortcut_subsamples_exactly_and_zero_pads(shape, strides, dtype):
    # Option A keeps every `strides`-th position, the first included (as x[:, ::2, ::2, :]),
    # and its gradient reaches exactly those positions: on TensorFlow it is a pooling of
    # one-wide windows, which must take the values unchanged, in any dtype.
    rng = np.random.default_rng(0)
    channels = shape[-1]
    x = tf.cast(rng.standard_normal(shape), dtype)
    layer = kr.IdentityShortcut(filters=channels + 2, strides=strides, mode="pad", dtype=dtype)
    kept = (slice(None), *[slice(None, None, strides)] * (len(shape) - 2), slice(None))
    weights = rng.standard_normal((*np.zeros(shape)[kept].shape[:-1], channels + 2))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(tf.cast(y, "float64") * weights)
    gradient = tf.cast(tape.gradient(loss, x), "float64").numpy()
    y, x = tf.cast(y, "float64").numpy(), tf.cast(x, "float64").numpy()
    np.testing.assert_array_equal(y[..., :channels], x[kept])
    assert not y[..., channels:].any()
    expected = np.zeros(shape)
    expected[kept] = tf.cast(tf.cast(weights[..., :channels], dtype), "float64").numpy()
    np.testing.assert_array_equal(gradient, expected)


def test_avg_down_projection_averages_before_the_1x1():
    layer = kr.ProjectionShortcut(4, strides=2, avg_down=True, use_bn=False)
    x = np.random.default_rng(0).random((1, 4, 4, 2), dtype="float32")
    y = keras.ops.convert_to_numpy(layer(x))
    pooled = x.reshape(1, 2, 2, 2, 2, 2).mean(axis=(2, 4))
    kernel = keras.ops.convert_to_numpy(layer.conv.kernel)[0, 0]
    np.testing.assert_allclose(y, pooled @ kernel, rtol=1e-5)


def test_gated_shortcut_starts_close_to_identity():
    x = np.random.default_rng(0).random((2, 4, 4, 8), dtype="float32")
    y = keras.ops.convert_to_numpy(kr.GatedShortcut(gate_bias=-6.0)([x, np.zeros_like(x)]))
    # The 1x1 gate sees x, so T(x) = sigmoid(Wx - 6) is small but not exactly 0.
    np.testing.assert_allclose(y, x, atol=0.05)


@pytest.mark.parametrize(("preact", "expected"), [(False, np.maximum), (True, lambda x, _: x)])
def test_zero_init_residual_block_is_the_identity_path(preact, expected):
    block = kr.BasicBlock(16, zero_init_residual=True, preact=preact)
    x = tf.constant(np.random.default_rng(0).normal(size=(1, 4, 4, 16)).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = block(x, training=False)
    np.testing.assert_array_equal(y.numpy(), expected(x.numpy(), 0))
    jacobian = tape.jacobian(y, x).numpy().reshape(x.shape.num_elements(), -1)
    mask = (x.numpy() > 0).ravel() if not preact else np.ones(x.shape.num_elements())
    np.testing.assert_array_equal(jacobian, np.diag(mask.astype("float32")))


def test_residual_branch_is_live_without_zero_init():
    x = np.random.default_rng(0).normal(size=(1, 4, 4, 16)).astype("float32")
    y = keras.ops.convert_to_numpy(kr.BasicBlock(16, preact=True)(x))
    assert np.abs(y - x).max() > 1e-3


def _kernels(layer) -> list[np.ndarray]:
    return [keras.ops.convert_to_numpy(w) for w in layer.weights if w.name == "kernel"]


@pytest.mark.parametrize(
    ("layer", "channels"),
    [
        (lambda: kr.BasicBlock(16), 16),
        (lambda: kr.BasicBlock(16, kernel_initializer=keras.initializers.HeNormal()), 16),
        (lambda: kr.DenseBlock(3, growth_rate=4), 8),  # every unit's 3x3 is 16 -> 4
    ],
)
def test_a_blocks_convolutions_start_from_their_own_random_kernels(layer, channels):
    # Keras 3's unseeded initializer instance draws the same values on every call: shared
    # by a block's same-shaped convolutions, it would start them identical.
    layer = layer()
    layer.build((None, 8, 8, channels))
    by_shape = {}
    for kernel in _kernels(layer):
        by_shape.setdefault(kernel.shape, []).append(kernel)
    repeated = [kernels for kernels in by_shape.values() if len(kernels) > 1]
    assert repeated  # the case has same-shaped kernels to compare
    for kernels in repeated:
        assert not any(np.array_equal(a, b) for i, a in enumerate(kernels) for b in kernels[:i])


def test_a_seeded_initializer_still_seeds_the_block():
    kernels = []
    for _ in range(2):
        block = kr.BasicBlock(16, kernel_initializer=keras.initializers.HeNormal(seed=3))
        block.build((None, 8, 8, 16))
        kernels.append(_kernels(block))
    for a, b in zip(*kernels, strict=True):
        np.testing.assert_array_equal(a, b)


def test_dirac_convolution_passes_its_first_channels_through():
    conv = keras.layers.Conv2D(48, 3, padding="same", kernel_initializer=kr.Dirac())
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 32)).astype("float32")
    y = keras.ops.convert_to_numpy(conv(x))
    np.testing.assert_allclose(y[..., :32], x, atol=1e-6)
    drawn = keras.ops.convert_to_numpy(conv.kernel)[..., 32:]
    bound = 1 / np.sqrt(3 * 3 * 32)  # PyTorch's default: U(+-1/sqrt(fan_in))
    assert np.abs(drawn).max() <= bound and np.abs(drawn).max() > 0.9 * bound
    narrowing = kr.Dirac()((1, 1, 4, 2))  # fewer filters than channels: all identity
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(narrowing)[0, 0], np.eye(4, 2))


def test_dirac_rejects_a_kernel_that_is_not_2d():
    with pytest.raises(ValueError, match="2-D convolution kernels.*got shape \\(3, 4\\)"):
        kr.Dirac()((3, 4))


def test_a_dirac_network_starts_its_convolutions_as_the_identity():
    spec = kr.fast_cifar_spec("s", filters=(8, 16, 16)).replace(conv_init="dirac")
    model = kr.build_network(spec)
    convs = [layer for layer in model._flatten_layers() if type(layer) is keras.layers.Conv2D]
    assert len(convs) == 7
    for conv in convs:
        kernel = keras.ops.convert_to_numpy(conv.kernel)
        identity = min(kernel.shape[2:])  # 24 whitened channels -> 8 filters: 8 of them
        np.testing.assert_array_equal(kernel[1, 1, :, :identity], np.eye(kernel.shape[2], identity))
    reloaded = kr.spec_from_dict(json.loads(json.dumps(spec.to_dict())))
    assert reloaded.conv_init == "dirac"


def test_drop_path_drops_whole_samples_and_keeps_the_mean():
    layer = kr.DropPath(0.5, seed=3)
    x = np.ones((4000, 2, 2, 3), "float32")
    y = keras.ops.convert_to_numpy(layer(x, training=True))
    per_sample = y.reshape(4000, -1)
    assert set(np.unique(per_sample)) <= {0.0, 2.0}
    assert (per_sample.min(axis=1) == per_sample.max(axis=1)).all()
    assert abs(y.mean() - 1.0) < 0.05
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x, training=False)), x)


def test_squeeze_excite_gates_channels_between_zero_and_one():
    x = np.random.default_rng(0).random((2, 4, 4, 8), dtype="float32")
    y = keras.ops.convert_to_numpy(kr.SqueezeExcite(0.5)(x))
    ratio = y / x
    assert ((ratio > 0) & (ratio < 1)).all()
    np.testing.assert_allclose(ratio, ratio[:, :1, :1, :] * np.ones_like(ratio), rtol=1e-5)


def test_dense_block_concatenates_its_input_unchanged():
    x = np.random.default_rng(0).random((2, 6, 6, 5), dtype="float32")
    y = keras.ops.convert_to_numpy(kr.DenseBlock(3, growth_rate=4)(x))
    assert y.shape == (2, 6, 6, 5 + 12)
    np.testing.assert_array_equal(y[..., :5], x)


@pytest.mark.parametrize(
    ("block", "params"),
    [
        # 2 x (3*3*16*16) conv + 2 x 4*16 BN (gamma, beta, mean, var)
        (lambda: kr.BasicBlock(16), 2 * 3 * 3 * 16 * 16 + 2 * 4 * 16),
        # ResNet-50 stage-1 first block: 1x1 64->64, 3x3 64->64, 1x1 64->256, proj 64->256
        (
            lambda: kr.BottleneckBlock(64),
            64 * 64 + 9 * 64 * 64 + 64 * 256 + 64 * 256 + 4 * (64 + 64 + 256 + 256),
        ),
    ],
)
def test_parameter_counts(block, params):
    layer = block()
    layer.build((None, 8, 8, 16 if isinstance(layer, kr.BasicBlock) else 64))
    assert layer.count_params() == params


@pytest.mark.parametrize("shape", [(16, 8, 8, 5), (16, 24, 5)])  # images, sequences
@pytest.mark.parametrize("scale", [True, False])
def test_fused_batch_norm_trains_like_keras_batch_norm(scale, shape):
    x = tf.constant(np.random.default_rng(0).normal(1, 2, shape).astype("float32"))
    results = []
    for layer in (
        keras.layers.BatchNormalization(momentum=0.9, scale=scale),
        kr.FusedBatchNormalization(momentum=0.9, scale=scale),
    ):
        layer.build(x.shape)
        if scale:
            layer.gamma.assign(np.linspace(0.5, 2, 5))
        layer.beta.assign(np.linspace(-1, 1, 5))
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * tf.sin(y))
        weights = [layer.gamma.value] if scale else []
        gradients = tape.gradient(loss, [x, *weights, layer.beta.value])
        results.append((y, gradients, layer.moving_mean.numpy(), layer.moving_variance.numpy()))
    (y0, g0, mean0, var0), (y1, g1, mean1, var1) = results
    np.testing.assert_allclose(y1, y0, atol=1e-5)
    for a, b in zip(g1, g0, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(mean1, mean0, atol=1e-6)
    n = np.prod(shape[:-1])  # the fused kernel's moving variance is the unbiased one
    np.testing.assert_allclose((var1 - 0.9) / (var0 - 0.9), n / (n - 1), rtol=1e-5)


@pytest.mark.parametrize("channels", [8, 16])  # float32 inside for 8, bfloat16 kernel for 16
def test_fused_batch_norm_in_bfloat16_matches_float32(channels):
    x = np.random.default_rng(0).normal(1, 2, (16, 8, 8, channels)).astype("float32")
    layers = {
        dtype: kr.FusedBatchNormalization(dtype=dtype) for dtype in ("float32", "mixed_bfloat16")
    }
    outputs = {dtype: layer(x, training=True) for dtype, layer in layers.items()}
    assert outputs["mixed_bfloat16"].dtype == "bfloat16"
    np.testing.assert_allclose(
        keras.ops.cast(outputs["mixed_bfloat16"], "float32"), outputs["float32"], atol=0.05
    )
    for name in ("moving_mean", "moving_variance"):
        ours, reference = (getattr(layers[d], name).numpy() for d in layers)
        np.testing.assert_allclose(ours, reference, rtol=0.02)


def test_fused_batch_norm_falls_back_where_the_kernel_does_not_apply():
    layer = kr.FusedBatchNormalization()
    flat = np.random.default_rng(0).normal(2, 3, (32, 6)).astype("float32")
    y = layer(flat, training=True)  # rank 2: the Keras path
    np.testing.assert_allclose(keras.ops.mean(y, axis=0), 0, atol=1e-5)
    assert isinstance(kr.resnet_cifar(8).get_layer("stem_bn"), kr.FusedBatchNormalization)
