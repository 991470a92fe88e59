import json
import time

import keras
import numpy as np
import pytest

import keras_residual as kr
from keras_residual.training import MOST_STRETCH, learning_rate_schedule


def tiny_model(data):
    return kr.resnet_cifar(8, data.input_shape, data.num_classes, width=8)


def test_recipes_are_data_and_validate():
    assert kr.RECIPES["he2016"].optimizer == "momentum"
    assert kr.get_recipe("he2016", batch_size=256).batch_size == 256
    with pytest.raises(ValueError, match="`recipe`"):
        kr.get_recipe("fastest")
    with pytest.raises(ValueError, match="`optimizer`"):
        kr.get_recipe("fast", optimizer="lbfgs")
    with pytest.raises(ValueError, match="`learning_rate`"):
        kr.Recipe(learning_rate=0)


def test_he2016_schedule_scales_with_batch_and_steps_down():
    recipe = kr.get_recipe("he2016", batch_size=256)
    schedule = learning_rate_schedule(recipe, steps_per_epoch=100, epochs=4)
    rates = [float(schedule(step)) for step in (0, 199, 201, 301)]
    np.testing.assert_allclose(rates, [0.2, 0.2, 0.02, 0.002], rtol=1e-6)


def test_fast_schedule_warms_up_then_decays_to_zero():
    schedule = learning_rate_schedule(kr.get_recipe("fast"), steps_per_epoch=100, epochs=2)
    rates = np.array([float(schedule(step)) for step in range(200)])
    peak = rates.argmax()
    assert 20 <= peak <= 40 and np.isclose(rates.max(), 0.2, rtol=1e-3)
    assert (np.diff(rates[:peak]) > 0).all() and (np.diff(rates[peak:]) <= 0).all()
    assert rates[-1] < 0.01


def _dense_model():
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(2, activation="softmax", kernel_initializer="zeros")(inputs)
    return keras.Model(inputs, outputs)


def test_the_plateau_schedule_halves_the_rate_when_the_loss_stalls():
    """Zero inputs give zero gradients: the loss never falls, so each epoch past the first
    halves the rate for the next (patience 1) until it reaches `anneal_to` of the peak."""
    recipe = kr.Recipe(optimizer="adam", learning_rate=1e-3, reference_batch=10, batch_size=10,
                       weight_decay=0.0, schedule="plateau", patience=1, anneal_to=0.1)  # fmt: skip
    model, x, y = _dense_model(), np.zeros((20, 4)), np.arange(20) % 2
    history = kr.fit_with_recipe(model, x, y, epochs=6, recipe=recipe, verbose=0)
    rates = history.history["learning_rate"]
    np.testing.assert_allclose(rates, [1e-3, 1e-3, 5e-4, 2.5e-4, 1.25e-4, 1e-4], rtol=1e-5)
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-4)


def test_the_plateau_schedule_keeps_the_weights_of_the_lowest_training_loss():
    """Whatever epoch had the lowest loss, its weights are the model's at the end, even
    when the last epoch's weights are wiped after it was logged."""
    seen = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((logs["loss"], [w.copy() for w in self.model.get_weights()]))
            if epoch == 5:  # after the schedule's callbacks: a copy it made is intact
                self.model.set_weights([np.zeros_like(w) for w in self.model.get_weights()])

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 4)), rng.integers(0, 2, 64)
    recipe = kr.Recipe(optimizer="sgd", learning_rate=3.0, reference_batch=8, batch_size=8,
                       weight_decay=0.0, schedule="plateau", patience=50)  # fmt: skip
    model = _dense_model()
    kr.fit_with_recipe(model, x, y, epochs=6, recipe=recipe, verbose=0, callbacks=[Record()])
    lowest = min(range(6), key=lambda k: seen[k][0])
    for kept, final in zip(seen[lowest][1], model.get_weights(), strict=True):
        np.testing.assert_array_equal(kept, final)
    assert any(np.any(w) for w in model.get_weights())


def test_a_batch_fraction_sizes_batches_by_the_training_set():
    recipe = kr.get_recipe("wang2017")
    assert (recipe.batch_fraction, recipe.batch_size) == (0.1, 64)
    small = recipe.for_examples(36)
    assert (small.batch_size, small.reference_batch, small.learning_rate) == (3, 3, 1e-3)
    assert recipe.for_examples(5).batch_size == 1 and recipe.for_examples(10**4).batch_size == 64
    assert [kr.get_recipe("series").for_examples(n).batch_size for n in (36, 270)] == [3, 16]
    assert kr.get_recipe("fast").for_examples(36) == kr.get_recipe("fast")  # no fraction
    with pytest.raises(ValueError, match="`batch_fraction`"):
        kr.Recipe(batch_fraction=1.5)
    with pytest.raises(ValueError, match="`patience`"):
        kr.Recipe(schedule="plateau", patience=0)


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw"])
def test_optimizers_by_name(name):
    optimizer = kr.make_optimizer(name, 0.01, 1e-4)
    assert optimizer.weight_decay == pytest.approx(1e-4)


def test_weight_decay_skips_norms_and_biases():
    model = kr.resnet_cifar(8, (8, 8, 1), 2, width=2)
    kr.training.compile_model(model, kr.get_recipe("he2016"), 10, 1)
    decayed = {w.path for w in model.trainable_weights if model.optimizer._use_weight_decay(w)}
    assert decayed and all(w.endswith("kernel") for w in decayed)
    assert any("gamma" in w.path for w in model.trainable_weights)


class _Rates(keras.callbacks.Callback):
    """The learning rate of every step, as the step ran."""

    def __init__(self):
        super().__init__()
        self.rates = []

    def on_train_batch_end(self, batch, logs=None):
        self.rates.append(float(self.model.optimizer.learning_rate))


class _Slow(keras.callbacks.Callback):
    """Steps of at least 20 ms."""

    def on_train_batch_end(self, batch, logs=None):
        time.sleep(0.02)


def _paced_run(epochs: int, seconds: float, *callbacks):
    """A Dense model trained with the `fast` recipe on 20 examples in batches of 10 (with
    a warm-up of 60 epochs, cosine to zero), paced to `seconds`: its history, rates, wall
    time and recipe."""
    model, rates = _dense_model(), _Rates()
    x, y = np.random.default_rng(0).random((20, 4)), np.arange(20) % 2
    recipe = kr.get_recipe("fast", batch_size=10, reference_batch=10, warmup_epochs=60)
    began = time.monotonic()
    history = kr.fit_with_recipe(model, x, y, epochs=epochs, recipe=recipe, verbose=0,
                                 seconds=seconds, callbacks=[rates, *callbacks])  # fmt: skip
    return history, np.array(rates.rates), time.monotonic() - began, recipe


def test_a_run_paced_to_a_time_ends_with_it_and_completes_its_schedule():
    """Steps of 20 ms or more fit at most 150 of the 400 planned (200 epochs, 30% of them
    warm-up) in 3 s: the run trains until the time ends and its rate rises to the peak and
    falls to the schedule's end as the time runs out, not as the planned epochs would."""
    history, rates, took, recipe = _paced_run(200, 3.0, _Slow())
    assert took >= 3.0  # the last step ended past the deadline, not before it
    assert 10 < len(history.epoch) <= 75
    peak = rates.argmax()
    assert np.isclose(rates.max(), recipe.learning_rate, rtol=0.1) and 2 < peak < len(rates) / 2
    assert (np.diff(rates[:peak]) > 0).all() and (np.diff(rates[peak:]) <= 0).all()
    assert rates[-1] < 0.05 * rates.max()  # the schedule's end, within a step's share


def test_a_paced_run_that_reaches_its_most_epochs_first_ends_its_schedule_with_them():
    """With an hour for 2 planned epochs the run stops at `MOST_STRETCH` times them, each
    step's rate the schedule's at its share of those steps (of the 4 planned)."""
    history, rates, _, recipe = _paced_run(2, 3600.0)
    most = MOST_STRETCH * 2 * 2  # epochs of 2 steps
    assert len(history.epoch) == MOST_STRETCH * 2 and len(rates) == most
    schedule = learning_rate_schedule(recipe, steps_per_epoch=2, epochs=2)
    expected = [float(schedule(4 * step / most)) for step in range(most)]
    np.testing.assert_allclose(rates, expected, rtol=1e-3, atol=1e-6)


def test_pacing_refuses_a_bad_time_and_runs_it_cannot_pace(data_dir, tmp_path):
    data = kr.load_dataset("mnist", data_dir)
    model = tiny_model(data)
    with pytest.raises(ValueError, match="`seconds`"):
        kr.train(model, data, epochs=1, seconds=0, verbose=0)
    with pytest.raises(ValueError, match="`seconds` paces a run from its start"):
        kr.train(model, data, epochs=2, seconds=10, initial_epoch=1, verbose=0)
    with pytest.raises(ValueError, match="a run paced to a time does not resume"):
        kr.train(model, data, epochs=1, seconds=10, out_dir=tmp_path / "run", resume=True)
    assert not (tmp_path / "run").exists()  # refused before anything is written


def test_training_learns_a_learnable_task(data_dir):
    data = kr.load_dataset("mnist", data_dir)
    model = tiny_model(data)
    recipe = kr.get_recipe("fast", batch_size=32, learning_rate=0.1)
    history = kr.train(model, data, epochs=4, recipe=recipe, verbose=0)
    assert history.history["val_accuracy"][-1] >= 0.9
    assert kr.evaluate(model, data)["accuracy"] >= 0.9


def test_logs_get_a_line_per_epoch_not_a_progress_bar(data_dir, capsys):
    data = kr.load_dataset("mnist", data_dir).subset(train=256, val=32)
    recipe = kr.get_recipe("fast", batch_size=8)  # 32 steps an epoch
    kr.train(tiny_model(data), data, epochs=2, recipe=recipe)  # verbose="auto"
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and lines[0] == "Epoch 1/2" and "val_accuracy" in lines[1]


def test_an_imported_ipykernel_is_not_a_notebook(capsys):
    pytest.importorskip("ipykernel")  # imported by the notebook tests in the same process
    assert kr.training.progress_verbosity() == 2  # stdout captured: no terminal, no kernel


class _Interrupt(keras.callbacks.Callback):
    """Kills the run in the middle of its third epoch."""

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == 2 and batch == 1:
            raise KeyboardInterrupt


@pytest.mark.slow
def test_interrupted_run_resumes_from_its_last_epoch(data_dir, tmp_path):
    data = kr.load_dataset("mnist", data_dir).subset(train=256, val=32)
    recipe = kr.get_recipe("fast", batch_size=64, lookahead=5)  # Lookahead resumes at step
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        kr.train(tiny_model(data), data, epochs=4, recipe=recipe, out_dir=out,
                 callbacks=[_Interrupt()], verbose=0)  # fmt: skip
    with pytest.raises(FileExistsError, match="resume"):
        kr.train(tiny_model(data), data, epochs=4, recipe=recipe, out_dir=out, verbose=0)
    model = tiny_model(data)
    history = kr.train(model, data, epochs=4, recipe=recipe, out_dir=out, resume=True,
                       verbose=0)  # fmt: skip
    assert history.epoch == [2, 3]
    steps = -(-len(data.y_train) // 64)  # the optimizer's state and schedule came back
    assert int(model.optimizer.iterations) == 4 * steps
    epochs = [line.split(",")[0] for line in (out / "log.csv").read_text().splitlines()[1:]]
    assert epochs == ["0", "1", "2", "3"]
    assert json.loads((out / "backup" / "state.json").read_text())["epoch"] == 4  # kept
    assert json.loads((out / "recipe.json").read_text())["batch_size"] == 64
    best = keras.saving.load_model(out / "best_model.keras", safe_mode=True)
    assert best.count_params() == tiny_model(data).count_params()


@pytest.mark.slow
def test_a_resumed_run_trains_on_the_batches_the_uninterrupted_run_did(data_dir, tmp_path):
    # Each epoch's order and flips follow its number (4 batches an epoch).
    data = kr.load_dataset("mnist", data_dir).subset(train=256, val=32)
    recipe = kr.get_recipe("fast", batch_size=64, flip="alternate", lookahead=0)
    whole = tiny_model(data)
    kr.train(whole, data, epochs=4, recipe=recipe, verbose=0)
    with pytest.raises(KeyboardInterrupt):
        kr.train(tiny_model(data), data, epochs=4, recipe=recipe, out_dir=tmp_path,
                 callbacks=[_Interrupt()], verbose=0)  # fmt: skip
    resumed = tiny_model(data)
    kr.train(resumed, data, epochs=4, recipe=recipe, out_dir=tmp_path, resume=True, verbose=0)
    for a, b in zip(whole.weights, resumed.weights, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, err_msg=a.path)


def test_a_run_records_the_spec_its_model_was_built_from(data_dir, tmp_path):
    data = kr.load_dataset("mnist", data_dir).subset(train=128, val=32)
    model = tiny_model(data)
    kr.train(model, data, epochs=1, recipe=kr.get_recipe("fast", batch_size=64),
             out_dir=tmp_path, verbose=0)  # fmt: skip
    recorded = kr.spec_from_dict(json.loads((tmp_path / "spec.json").read_text()))
    assert recorded == model.spec
    assert kr.build_network(recorded).count_params() == model.count_params()
