import json

import keras
import numpy as np
import pytest

import keras_residual as kr
from keras_residual.training import learning_rate_schedule


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
