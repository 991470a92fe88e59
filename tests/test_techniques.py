"""The CIFAR-10 speed family and its techniques, each for its behaviour on tiny data:
whitening, one-cycle schedule, weight averaging, Lookahead, frozen norm scales and faster
norm shifts, the scaled-logit head, flip TTA, cutout, pooling stages."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import learnable_images

import keras_residual as kr
from keras_residual import training
from keras_residual.data import CIFAR10_CLASSES, make_pipeline
from keras_residual.training import learning_rate_schedule


def cifar_like(count=64, seed=0):
    x, y = learnable_images(count, (32, 32, 3), seed=seed)
    return kr.Dataset("cifar10", x, y, x[:32], y[:32], x[:32], y[:32], CIFAR10_CLASSES)


def small_fast_cifar(**changes):
    return kr.fast_cifar("s", num_classes=10, filters=(8, 16, 16), **changes)


# --- architecture ----------------------------------------------------------------------


def test_speed_presets_are_specs_with_pooling_stages():
    for size, stages in kr.FAST_CIFAR_SIZES.items():
        spec = kr.get_spec(f"fast_cifar_{size}")
        assert (spec.filters, spec.depths) == (stages["filters"], stages["depths"])
        assert (spec.stem, spec.downsample) == ("whiten", "pool")
        assert (spec.pooling, spec.logit_scale, spec.norm.momentum) == ("max", 1 / 9, 0.6)
        assert (spec.norm.scale, spec.conv_init) == (False, "dirac")  # airbench's
        assert kr.default_recipe(spec.name) == "airbench"
    model = kr.build("fast_cifar_s")
    # 32 -> 31 (2x2 whitening, valid) -> 15 -> 7 -> 3; blocks keep the shape of their stage.
    sizes = [model.get_layer(f"stage{s}_pool").output.shape[1] for s in (1, 2, 3)]
    assert sizes == [15, 7, 3]
    assert model.get_layer("stage3_block1").output.shape == (None, 3, 3, 256)
    assert "stage2_block1" not in [layer.name for layer in model.layers]  # depth 0 stage


def test_pool_downsampling_keeps_bottleneck_identities():
    spec = kr.ResNetSpec(
        block="bottleneck", downsample="pool", depths=(1, 1), filters=(4, 8), strides=(2, 2)
    )
    model = kr.build_network(spec)
    assert model.get_layer("stage2_entry_conv").filters == 32  # filters * expansion
    assert model.get_layer("stage2_block1").shortcut_layer is None


def test_empty_stages_need_pool_downsampling():
    with pytest.raises(ValueError, match="downsample='pool'"):
        kr.ResNetSpec(depths=(1, 0, 1))
    with pytest.raises(ValueError, match="downsample"):
        kr.ResNetSpec(downsample="conv")
    with pytest.raises(ValueError, match="size"):
        kr.fast_cifar_spec("xl")


# --- whitening -------------------------------------------------------------------------


def test_whitening_decorrelates_its_own_data():
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(3, 3))
    images = (rng.normal(size=(64, 12, 12, 3)) @ mixing).astype("float32")
    images[:, :, 1:] += images[:, :, :-1]  # neighbouring pixels correlate too
    layer = kr.PatchWhitening(kernel_size=2)
    before = np.asarray(layer(images)).reshape(-1, 24)[:, :12]
    layer.adapt(images)
    after = np.asarray(layer(images)).reshape(-1, 24)[:, :12]
    covariance = after.T @ after / len(after)
    np.testing.assert_allclose(covariance, np.eye(12), atol=0.02)
    off_diagonal = before.T @ before / len(before) - np.diag(np.diag(before.T @ before))
    assert np.abs(off_diagonal).max() > 0.5  # the random projection did not whiten
    # The second half negates the first (to float32 rounding: the convolution need not sum
    # a negated filter in the same order; AVX2-only CPUs do not).
    whitened = np.asarray(layer(images))
    np.testing.assert_allclose(whitened[..., 12:], -whitened[..., :12], rtol=1e-5, atol=1e-6)


def test_training_adapts_the_whitening_stem_once(tmp_path):
    data, model = cifar_like(), small_fast_cifar()
    kernel = model.get_layer("stem_whiten").kernel
    initial = np.asarray(kernel).copy()
    kr.train(model, data, epochs=1, recipe="fast_cifar", verbose=0)
    adapted = np.asarray(kernel).copy()
    assert not np.allclose(initial, adapted)
    expected = kr.PatchWhitening(kernel_size=2)
    expected.adapt(data.normalize(data.x_train))
    np.testing.assert_allclose(adapted, np.asarray(expected.kernel), rtol=1e-5, atol=1e-5)
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_array_equal(np.asarray(reloaded.get_layer("stem_whiten").kernel), adapted)
    kr.train(model, data, epochs=2, initial_epoch=1, recipe="fast_cifar", verbose=0)
    np.testing.assert_array_equal(np.asarray(kernel), adapted)  # frozen, and not re-adapted


def test_training_keeps_a_whitening_stem_set_before_on_other_images(tmp_path):
    data, other_images = cifar_like(), cifar_like(seed=1)
    model = small_fast_cifar()
    model.save(tmp_path / "fresh.keras")
    reloaded = keras.saving.load_model(tmp_path / "fresh.keras", safe_mode=True)
    assert not reloaded.get_layer("stem_whiten").is_adapted  # the initial projection, saved
    kr.train(model, data, epochs=1, recipe="fast_cifar", verbose=0)
    assert model.get_layer("stem_whiten").is_adapted
    trained = np.asarray(model.get_layer("stem_whiten").kernel).copy()
    model.save_weights(tmp_path / "trained.weights.h5")
    # a network started from those weights goes on with the stem the layers after it learnt
    started = small_fast_cifar()
    started.load_weights(tmp_path / "trained.weights.h5")
    assert started.get_layer("stem_whiten").is_adapted
    kr.train(started, other_images, epochs=1, recipe="fast_cifar", verbose=0)
    np.testing.assert_array_equal(np.asarray(started.get_layer("stem_whiten").kernel), trained)
    # asked for, `adapt_whitening` sets it from the other images
    assert kr.adapt_whitening(started, other_images.normalize(other_images.x_train)) == [
        "stem_whiten"
    ]
    assert not np.allclose(np.asarray(started.get_layer("stem_whiten").kernel), trained)


def test_only_whitening_layers_on_the_input_are_adapted():
    inputs = keras.Input((8, 8, 3))
    first = kr.PatchWhitening(name="first")
    deeper = kr.PatchWhitening(name="deeper")
    model = keras.Model(inputs, deeper(first(inputs)))
    images = np.random.default_rng(0).normal(size=(8, 8, 8, 3))
    assert kr.adapt_whitening(model, images) == ["first"]
    with pytest.raises(ValueError, match="images"):
        first.adapt(np.zeros((8, 8, 3)))


def test_a_scaled_input_is_resized_first_and_whitened_as_resized(tmp_path):
    data = cifar_like()

    def up(images):  # each pixel as a 2x2 block: halved again, the images as they were
        return np.repeat(np.repeat(images, 2, axis=1), 2, axis=2)

    big = kr.Dataset("cifar10", up(data.x_train), data.y_train, up(data.x_val), data.y_val,
                     up(data.x_test), data.y_test, CIFAR10_CLASSES)  # fmt: skip
    model = small_fast_cifar(input_shape=(64, 64, 3), input_scale=0.5)
    assert model.spec.scaled_shape == (32, 32, 3)
    assert model.get_layer("input_resize").output.shape == (None, 32, 32, 3)
    assert model.get_layer("input_resize").dtype_policy.compute_dtype == "float32"
    assert kr.count_flops(model) < 0.3 * kr.count_flops(small_fast_cifar(input_shape=(64, 64, 3)))
    kr.train(model, big, epochs=1, recipe="fast_cifar", verbose=0)
    # the stem is set from the images as the network sees them: the 2x2 blocks averaged
    expected = kr.PatchWhitening(kernel_size=2)
    expected.adapt(data.normalize(data.x_train))
    adapted = np.asarray(model.get_layer("stem_whiten").kernel)
    np.testing.assert_allclose(adapted, np.asarray(expected.kernel), rtol=1e-4, atol=1e-4)
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_array_equal(reloaded.predict(big.x_test), model.predict(big.x_test))
    # called without `training`, it infers (keras.layers.Resizing would turn it on for the
    # norms after it: batch statistics, moving averages updated)
    x = big.x_test.astype("float32")
    np.testing.assert_allclose(model(x), model(x, training=False), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("as_dataset", [False, True])
def test_fit_with_recipe_whitens_from_the_first_images_channel_axis_or_not(as_dataset):
    images = np.random.default_rng(0).normal(size=(64, 8, 8)).astype("float32")
    labels = np.arange(64) % 2
    inputs = keras.Input((8, 8, 1))
    x = kr.PatchWhitening(name="whiten")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x)))
    initial = np.asarray(model.get_layer("whiten").kernel)
    train = (images, labels)  # no channel axis: Keras's functional models add it
    if as_dataset:
        train = (tf.data.Dataset.from_tensor_slices(train).batch(16),)
    with pytest.MonkeyPatch.context() as patch:  # adapted to the first 40 images
        patch.setattr(training, "ADAPT_IMAGES", 40)
        kr.fit_with_recipe(model, *train, recipe="fast", verbose=0)
    expected = kr.PatchWhitening(kernel_size=2)
    expected.adapt(images[:40, ..., None])
    adapted = np.asarray(model.get_layer("whiten").kernel)
    assert not np.allclose(adapted, initial)
    np.testing.assert_allclose(adapted, np.asarray(expected.kernel), rtol=1e-5, atol=1e-5)


# --- schedule --------------------------------------------------------------------------


def test_one_cycle_rises_then_falls_to_zero():
    recipe = kr.get_recipe("fast_cifar", learning_rate=0.1, batch_size=128, warmup_epochs=1)
    schedule = learning_rate_schedule(recipe, steps_per_epoch=10, epochs=5)
    values = [float(schedule(step)) for step in (0, 5, 10, 30, 50)]
    np.testing.assert_allclose(values, [0.01, 0.055, 0.1, 0.05, 0.0], atol=1e-6)
    assert kr.OneCycle.from_config(schedule.get_config()).get_config() == schedule.get_config()
    with pytest.raises(ValueError, match="warmup_steps"):
        kr.OneCycle(peak=1.0, total_steps=10, warmup_steps=10)


def test_one_cycle_starts_and_ends_at_the_recipes_fractions():
    recipe = kr.get_recipe(
        "fast_cifar", learning_rate=1.0, batch_size=128, warmup_epochs=2, warmup_from=0.2,
        anneal_to=0.1,
    )  # fmt: skip
    schedule = learning_rate_schedule(recipe, steps_per_epoch=1, epochs=10)
    values = [float(schedule(step)) for step in (0, 1, 2, 6, 10)]
    np.testing.assert_allclose(values, [0.2, 0.6, 1.0, 0.55, 0.1], atol=1e-6)
    assert kr.OneCycle.from_config(schedule.get_config()).end_fraction == 0.1


def test_a_run_shorter_than_the_warm_up_still_anneals():
    recipe = kr.get_recipe("fast_cifar", learning_rate=0.1, batch_size=128)  # warm-up: 2 epochs
    schedule = learning_rate_schedule(recipe, steps_per_epoch=10, epochs=1)
    values = [float(schedule(step)) for step in (0, 3, 10)]
    np.testing.assert_allclose(values, [0.01, 0.1, 0.0], atol=1e-6)  # peak at 30% of the run
    ten_epochs = learning_rate_schedule(recipe, steps_per_epoch=10, epochs=10)
    assert float(ten_epochs(20)) == pytest.approx(0.1)  # a full run keeps its 2 epochs


# --- weight averaging ------------------------------------------------------------------


class _RawWeights(keras.callbacks.Callback):
    """The weights as the optimizer left them after the last step (before any swap)."""

    def on_train_batch_end(self, batch, logs=None):
        self.weights = [np.asarray(w).copy() for w in self.model.trainable_weights]


def test_ema_weights_differ_from_raw_and_are_what_validation_sees():
    data, model = cifar_like(), small_fast_cifar()
    raw = _RawWeights()
    recipe = kr.get_recipe("fast_cifar", ema=0.9, batch_size=16)
    history = kr.train(model, data, epochs=1, recipe=recipe, callbacks=[raw], verbose=0)
    averaged = [np.asarray(w) for w in model.trainable_weights]
    assert max(np.abs(a - r).max() for a, r in zip(averaged, raw.weights, strict=True)) > 1e-4
    # Validation ran on the averaged weights, which the model keeps at the end.
    final = kr.evaluate(model, data, "val")
    assert final["loss"] == pytest.approx(history.history["val_loss"][-1], rel=1e-4)
    for weight, value in zip(model.trainable_weights, raw.weights, strict=True):
        weight.assign(value)
    assert kr.evaluate(model, data, "val")["loss"] != pytest.approx(final["loss"], rel=1e-4)


def _lookahead_on_one_kernel(total_steps: int, epochs: int, steps, **options):
    """A Lookahead on a bias-free Dense layer whose (2, 1) kernel starts at 0, as `fit`
    sets it up (params given, train begun), with the kernel."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, use_bias=False)])
    kernel = model.weights[0]
    kernel.assign(np.zeros((2, 1)))
    lookahead = kr.Lookahead(total_steps=total_steps, **options)
    lookahead.set_model(model)
    lookahead.set_params({"epochs": epochs, "steps": steps})
    lookahead.on_train_begin()
    return lookahead, kernel


def test_lookahead_pulls_the_weights_back_to_the_slow_ones():
    lookahead, kernel = _lookahead_on_one_kernel(4, epochs=2, steps=2, every=2, base=0.5)
    lookahead.on_epoch_begin(0)  # slow = 0
    for batch in range(2):
        kernel.assign_add(np.ones((2, 1)))  # fast = 2 after two steps
        lookahead.on_train_batch_end(batch)
    decay = 0.5**2 * (2 / 4) ** 3
    assert lookahead.decay(2) == pytest.approx(decay)
    np.testing.assert_allclose(np.asarray(kernel), (1 - decay) * 2.0, rtol=1e-6)
    kernel.assign_add(np.ones((2, 1)))
    lookahead.on_train_end()  # keeps the slow weights, not the last step's
    np.testing.assert_allclose(np.asarray(kernel), (1 - decay) * 2.0, rtol=1e-6)


def test_lookahead_decays_by_the_step_its_clock_gives():
    """A run paced to a time (`ScheduleOverTime`) has its schedule's step from the clock,
    not from the steps trained: the decay follows the clock."""
    reached = [3.0]
    lookahead, kernel = _lookahead_on_one_kernel(
        4, epochs=2, steps=2, every=2, base=0.5, clock=lambda: reached[0]
    )
    lookahead.on_epoch_begin(0)  # slow = 0
    for batch in range(2):
        kernel.assign_add(np.ones((2, 1)))  # fast = 2 after two steps (the clock says 3)
        lookahead.on_train_batch_end(batch)
    decay = 0.5**2 * (3 / 4) ** 3
    np.testing.assert_allclose(np.asarray(kernel), (1 - decay) * 2.0, rtol=1e-6)


def test_lookahead_starts_from_restored_weights_and_the_resumed_step():
    # BackupAndRestore restores weights and the epoch in its own on_train_begin, after
    # Lookahead's (the recipe's callbacks come first): the slow weights and the step count
    # must come from the restored run, not from the model as it was handed to fit.
    lookahead, kernel = _lookahead_on_one_kernel(8, epochs=4, steps=2, every=2, base=0.5)
    kernel.assign(np.full((2, 1), 3.0))  # restored after Lookahead's on_train_begin
    lookahead.on_epoch_begin(2)  # resumed at epoch 2: step 4 of 8
    for batch in range(2):
        kernel.assign_add(np.ones((2, 1)))  # fast = 5 at step 6
        lookahead.on_train_batch_end(batch)
    decay = 0.5**2 * (6 / 8) ** 3
    assert lookahead.step == 6
    np.testing.assert_allclose(np.asarray(kernel), decay * 3.0 + (1 - decay) * 5.0, rtol=1e-6)


def test_lookahead_refuses_to_resume_on_data_of_unknown_length():
    lookahead, _ = _lookahead_on_one_kernel(8, epochs=4, steps=None)
    with pytest.raises(ValueError, match="epoch 2 of data of unknown length"):
        lookahead.on_epoch_begin(2)
    lookahead.on_epoch_begin(0)  # from the start it needs no length
    assert lookahead.step == 0


def test_lookahead_recipe_trains_and_keeps_the_slow_weights():
    data, model = cifar_like(), small_fast_cifar()
    raw = _RawWeights()
    recipe = kr.get_recipe("fast_cifar", lookahead=3, batch_size=16)  # 4 steps: a sync at 3
    kr.train(model, data, epochs=1, recipe=recipe, callbacks=[raw], verbose=0)
    final = [np.asarray(w) for w in model.trainable_weights]  # synced at steps 3 and 4
    assert max(np.abs(f - r).max() for f, r in zip(final, raw.weights, strict=True)) > 1e-6


# --- optimizer and norms ---------------------------------------------------------------


def test_rate_scaled_sgd_multiplies_the_named_variables_rate():
    shift, kernel = keras.Variable(np.zeros(3), name="beta"), keras.Variable(np.zeros(3))
    optimizer = kr.RateScaledSGD({"beta": 64.0}, learning_rate=0.01, momentum=0.85)
    optimizer.apply([np.ones(3, "float32")] * 2, [shift, kernel])
    np.testing.assert_allclose(np.asarray(shift), 64 * np.asarray(kernel), rtol=1e-6)
    assert np.asarray(kernel)[0] == pytest.approx(-0.01)
    restored = kr.RateScaledSGD.from_config(optimizer.get_config())
    assert (restored.rate_multipliers, restored.momentum) == ({"beta": 64.0}, 0.85)
    with pytest.raises(ValueError, match="rate_multipliers"):
        kr.RateScaledSGD({"beta": 0.0})


@pytest.mark.parametrize("shape", [(48, 12), (12, 48)])
def test_orthogonalize_keeps_the_singular_vectors_and_brings_the_values_near_one(shape):
    rng = np.random.default_rng(0)
    u, _ = np.linalg.qr(rng.normal(size=(shape[0], min(shape))))
    v, _ = np.linalg.qr(rng.normal(size=(shape[1], min(shape))))
    values = np.geomspace(10.0, 0.5, min(shape))  # a 20x spread of singular values
    matrix = (u * values) @ v.T
    projected = u.T @ np.asarray(kr.techniques.orthogonalize(matrix.astype("float32"))) @ v
    diagonal = np.diag(projected)
    assert np.all((diagonal > 0.5) & (diagonal < 1.5)), diagonal
    np.testing.assert_allclose(projected - np.diag(diagonal), 0.0, atol=1e-4)


def newton_schulz(g, steps=3):
    """airbench94_muon's orthogonalization, written again in NumPy (float64)."""
    x = g / (np.linalg.norm(g) + 1e-7)
    tall = x.shape[0] > x.shape[1]
    x = x.T if tall else x
    for _ in range(steps):
        a = x @ x.T
        x = 3.4445 * x + (-4.7750 * a + 2.0315 * a @ a) @ x
    return x.T if tall else x


def test_muon_sgd_takes_airbench_muons_step_for_kernels_and_sgd_for_the_rest():
    rng = np.random.default_rng(0)
    kernel0 = rng.normal(size=(3, 3, 4, 8))
    kernel = keras.Variable(kernel0.astype("float32"), name="kernel")
    shift = keras.Variable(np.zeros(8, "float32"), name="beta")
    optimizer = kr.MuonSGD({"beta": 64.0}, muon_rate_ratio=0.5, muon_momentum=0.6,
                           learning_rate=0.1, momentum=0.85, nesterov=True)  # fmt: skip
    grads = [rng.normal(size=(3, 3, 4, 8)) for _ in range(2)]
    expected, buffer = kernel0, np.zeros_like(kernel0)
    for g in grads:
        optimizer.apply([g.astype("float32"), np.ones(8, "float32")], [kernel, shift])
        buffer = 0.6 * buffer + g
        direction = (g + 0.6 * buffer).reshape(-1, 8)
        expected = expected * np.sqrt(8) / np.linalg.norm(expected)
        expected = expected - 0.05 * newton_schulz(direction).reshape(kernel0.shape)
    np.testing.assert_allclose(np.asarray(kernel), expected, atol=1e-4)
    # The shifts took two of Keras's Nesterov steps at 64x the rate (6.4): -6.4 (1 + 0.85)
    # and -6.4 (1 + 0.85 + 0.85^2).
    np.testing.assert_allclose(np.asarray(shift), -6.4 * (3.7 + 0.85**2), rtol=1e-5)
    restored = kr.MuonSGD.from_config(optimizer.get_config())
    assert (restored.muon_rate_ratio, restored.muon_momentum) == (0.5, 0.6)
    with pytest.raises(ValueError, match="newton_schulz_dtype"):
        kr.MuonSGD(newton_schulz_dtype="int8")


def test_airbench_muon_recipe_trains_kernels_with_muon_and_reloads(tmp_path):
    data, model = cifar_like(), small_fast_cifar()
    recipe = kr.get_recipe("airbench_muon", batch_size=16, reference_batch=16, lookahead=0)
    history = kr.train(model, data, epochs=2, recipe=recipe, out_dir=tmp_path, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert isinstance(model.optimizer, kr.MuonSGD)
    assert model.optimizer.muon_rate_ratio == pytest.approx(0.24 / 1.5)
    assert model.optimizer.newton_schulz_dtype == model.compute_dtype
    # Each kernel was rescaled to sqrt(filters) (identity kernels of fewer inputs start
    # shorter) before its last step: at most twice the annealed rate, 0.24 x 0.07, times
    # an orthogonalized direction (singular values under 1.5).
    for w in model.trainable_weights:
        if len(w.shape) == 4:
            norm, filters = np.linalg.norm(np.asarray(w)), w.shape[-1]
            reach = 2 * 0.24 * 0.07 * 1.5 * np.sqrt(min(filters, np.prod(w.shape[:-1])))
            assert abs(norm - np.sqrt(filters)) <= reach, w.path
    reloaded = keras.saving.load_model(tmp_path / "last_model.keras", safe_mode=True)
    assert isinstance(reloaded.optimizer, kr.MuonSGD)
    np.testing.assert_allclose(reloaded.predict(data.x_test, verbose=0),
                               model.predict(data.x_test, verbose=0), atol=1e-5)  # fmt: skip


def test_the_speed_family_has_no_norm_scales_to_train():
    model = small_fast_cifar()
    assert not any(w.name == "gamma" for w in model.weights)
    assert model.get_layer("stage1_entry_bn").get_config()["scale"] is False


def test_airbench_recipe_trains_norm_shifts_not_scales():
    # A network with batch-norm scales (not the speed family's, which has none): frozen.
    data, model = cifar_like(), small_fast_cifar(norm=kr.Norm(0.6, 1e-5))
    scales = [np.asarray(w).copy() for w in model.weights if w.name == "gamma"]
    assert scales
    shifts = [np.asarray(w).copy() for w in model.weights if w.name == "beta"]
    recipe = kr.get_recipe("airbench", batch_size=16)
    history = kr.train(model, data, epochs=1, recipe=recipe, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    assert isinstance(model.optimizer, kr.RateScaledSGD)
    assert model.optimizer.momentum == 0.85
    after = [np.asarray(w) for w in model.weights if w.name == "gamma"]
    assert all(np.array_equal(a, b) for a, b in zip(scales, after, strict=True))
    moved = [np.asarray(w) for w in model.weights if w.name == "beta"]
    assert any(not np.array_equal(a, b) for a, b in zip(shifts, moved, strict=True))


@pytest.mark.parametrize("scale", [False, True])
def test_a_speed_family_model_reloads_compiled_as_it_trained(scale, tmp_path, recwarn):
    # Keras saves no `trainable` flag: a frozen scale reloads trainable, and the saved
    # optimizer's variables no longer match (Keras skips them with a warning). The family's
    # norms have no scale, so its saved models reload whole.
    data, model = cifar_like(), small_fast_cifar(norm=kr.Norm(0.6, 1e-5, scale=scale))
    recipe = kr.get_recipe("airbench", batch_size=16)
    kr.train(model, data, epochs=1, recipe=recipe, out_dir=tmp_path, verbose=0)
    reloaded = keras.saving.load_model(tmp_path / "last_model.keras", safe_mode=True)
    skipped = [w for w in recwarn if "Skipping variable loading" in str(w.message)]
    thawed = len(reloaded.trainable_weights) - len(model.trainable_weights)  # scales
    assert (bool(skipped), thawed > 0) == (scale, scale)


def test_frozen_norm_scales_refuse_zero_initialised_blocks():
    model = small_fast_cifar(zero_init_residual=True, norm=kr.Norm(0.6, 1e-5))
    with pytest.raises(ValueError, match="zero_init_residual"):
        kr.freeze_norm_scales(model)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"norm_shift_rate": 64.0, "optimizer": "adam"}, "`norm_shift_rate` needs an SGD"),
        ({"norm_shift_rate": 0.0}, "`norm_shift_rate`"),
        ({"momentum": 1.0}, "`momentum`"),
        ({"muon_momentum": 1.0}, "`muon_momentum`"),
        ({"muon_rate": 0.0}, "`muon_rate`"),
        ({"lookahead": -1}, "`lookahead`"),
        ({"anneal_to": 1.5}, "`anneal_to`"),
    ],
)
def test_recipe_rejects_bad_technique_settings(changes, message):
    with pytest.raises(ValueError, match=message):
        kr.get_recipe("fast_cifar", **changes)


# --- head ------------------------------------------------------------------------------


def test_logit_scale_softens_the_softmax_and_max_pooling_heads_the_top():
    model = small_fast_cifar(logit_scale=1 / 9, pooling="max")
    assert "max_pool" in [layer.name for layer in model.layers]
    images = np.random.default_rng(0).random((4, 32, 32, 3)).astype("float32")
    logits = keras.Model(model.input, model.get_layer("logits").output).predict(images, verbose=0)
    expected = keras.ops.convert_to_numpy(keras.ops.softmax(logits / 9))
    np.testing.assert_allclose(model.predict(images, verbose=0), expected, rtol=1e-5, atol=1e-6)
    plain = kr.resnet_cifar(8, (8, 8, 1), 2, width=4)
    assert [layer.name for layer in plain.layers][-2:] == ["avg_pool", "predictions"]


# --- test-time augmentation ------------------------------------------------------------


def test_flip_tta_averages_the_mirrored_predictions():
    data, model = cifar_like(), small_fast_cifar()
    kr.train(model, data, epochs=1, recipe="fast_cifar", verbose=0)
    images = data.normalize(data.x_test)
    plain = model.predict(images, verbose=0)
    mirrored = model.predict(images[:, :, ::-1], verbose=0)
    averaged = kr.predict_with_tta(model, images, "flip")
    np.testing.assert_allclose(averaged, (plain + mirrored) / 2, rtol=1e-5, atol=1e-6)
    assert not np.allclose(averaged, plain, atol=1e-4)
    metrics = kr.evaluate(model, data, tta="flip")
    expected = np.mean(averaged.argmax(axis=1) == data.y_test)
    assert metrics["accuracy"] == pytest.approx(expected)
    picked = averaged[np.arange(len(data.y_test)), data.y_test]
    # A true class predicted at (float32) 0 costs -log(1e-12), as `evaluate` documents.
    expected_loss = -np.mean(np.log(np.maximum(picked, 1e-12)))
    assert metrics["loss"] == pytest.approx(expected_loss, rel=1e-5)
    np.testing.assert_allclose(kr.predict_with_tta(model, images, "none"), plain, rtol=1e-6)


def test_flip_translate_tta_weighs_mirrored_one_pixel_shifts():
    images = np.arange(2 * 5 * 6 * 3, dtype="float32").reshape(2, 5, 6, 3)
    views = kr.tta_views(images, "flip_translate")
    assert [weight for weight, _ in views] == [0.25, 0.25, 0.125, 0.125, 0.125, 0.125]
    (_, image), (_, mirror), (_, down_right), _, (_, up_left), _ = views
    np.testing.assert_array_equal(image, images)
    np.testing.assert_array_equal(mirror, images[:, :, ::-1])
    np.testing.assert_array_equal(down_right[:, 1:, 1:], images[:, :-1, :-1])
    np.testing.assert_array_equal(up_left[:, :-1, :-1], images[:, 1:, 1:])
    np.testing.assert_array_equal(down_right[:, 0, 1:], images[:, 1, :-1])  # reflected edge
    np.testing.assert_array_equal(views[3][1], down_right[:, :, ::-1])

    data, model = cifar_like(), small_fast_cifar()
    kr.train(model, data, epochs=1, recipe="fast_cifar", verbose=0)
    test_images = data.normalize(data.x_test)
    expected = sum(
        weight * model.predict(view, verbose=0)
        for weight, view in kr.tta_views(test_images, "flip_translate")
    )
    averaged = kr.predict_with_tta(model, test_images, "flip_translate")
    np.testing.assert_allclose(averaged, expected, rtol=1e-6)
    np.testing.assert_allclose(averaged.sum(axis=1), 1.0, rtol=1e-5)
    flip_only = kr.predict_with_tta(model, test_images, "flip")
    assert not np.allclose(averaged, flip_only, atol=1e-4)


def test_tta_refuses_unknown_modes_and_non_image_models():
    data, model = cifar_like(), small_fast_cifar()
    with pytest.raises(ValueError, match="'none', 'flip', 'flip_translate'"):
        kr.evaluate(model, data, tta="rotate")
    with pytest.raises(ValueError, match="tta"):
        kr.Recipe(tta="five_crop")
    inputs = keras.Input((10,))
    vector_model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    with pytest.raises(ValueError, match="4-D image input"):
        kr.predict_with_tta(vector_model, np.zeros((2, 10)), "flip")


# --- augmentation ----------------------------------------------------------------------


def test_cutout_erases_one_square_per_image_and_nothing_else():
    data = cifar_like()
    options = {"shuffle": False, "augment": True, "flip": False, "translate": 0}
    clean = next(iter(make_pipeline(data, batch_size=64, **options)))[0].numpy()
    cut = next(iter(make_pipeline(data, batch_size=64, cutout=8, **options)))[0].numpy()
    erased = np.any(clean != cut, axis=-1)
    np.testing.assert_array_equal(cut[erased], 0.0)
    per_image = erased.sum(axis=(1, 2))
    assert per_image.max() == 64 and per_image.min() > 0  # squares may hang over the border
    rows, cols = np.any(erased, axis=2), np.any(erased, axis=1)
    np.testing.assert_array_equal(per_image, rows.sum(1) * cols.sum(1))  # one rectangle each


def test_recipe_augmentation_overrides_the_dataset_default():
    data = cifar_like()
    options = {"shuffle": False, "augment": True, "translate": 0}
    plain = next(iter(make_pipeline(data, batch_size=64, flip=False, **options)))[0].numpy()
    flipped = next(iter(make_pipeline(data, batch_size=64, flip=True, **options)))[0].numpy()
    mirrored = np.all(flipped == plain[:, :, ::-1], axis=(1, 2, 3))
    same = np.all(flipped == plain, axis=(1, 2, 3))
    assert np.all(mirrored | same) and 10 < mirrored.sum() < 54
    for bad in ({"cutout": -1}, {"translate": 1.5}, {"flip": "yes"}, {"ema": 1.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            kr.Recipe(**bad)
