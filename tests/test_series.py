"""Residual networks for sequences: the archive's `.ts`/`.tsv` loaders and their bad inputs
(synthetic files written here), the `Residual` wrapper's arithmetic and errors, Wang et
al.'s ResNet against the reference Keras implementation, and `train` on a series folder."""

import json

import keras
import keras_tuner
import numpy as np
import pytest
from conftest import toy_series, write_dataset, write_ts

import keras_residual as kr
from keras_residual.data import DataError, load_series, read_ts
from keras_residual_cli import main


def test_a_ts_folder_loads_with_declared_classes_univariate_series_znormalised(tmp_path):
    folder = write_dataset(tmp_path / "Toy", dims=3)
    data = kr.load_dataset(folder, validation_split=0.25)
    assert data.x_train.shape[1:] == (32, 3) and data.x_train.dtype == np.float32
    assert data.class_names == ("down", "up")  # @classLabel's order
    assert len(data.y_train) + len(data.y_val) == 24 and len(data.y_test) == 24
    assert sorted(np.bincount(data.y_val).tolist()) == [3, 3]  # stratified
    # Multivariate series keep their levels (the pipelines standardise per channel).
    assert np.abs(data.x_train.mean(axis=1)).max() > 1
    assert data.augmentation == {}
    univariate = kr.load_dataset(write_dataset(tmp_path / "Uni"))
    series = np.concatenate([univariate.x_train, univariate.x_val, univariate.x_test])
    np.testing.assert_allclose(series.mean(axis=1), 0, atol=1e-5)  # z-normalised each
    np.testing.assert_allclose(series.std(axis=1), 1, atol=1e-3)
    same_file = kr.load_dataset(folder / "Toy_TEST.ts", validation_split=0.25)
    np.testing.assert_array_equal(same_file.x_test, data.x_test)


def test_unequal_lengths_are_resampled_to_the_longest_training_series(tmp_path):
    series, labels = toy_series(6, 20)
    series[1] = series[1][:11]
    write_ts(tmp_path / "Var_TRAIN.ts", series, labels)
    write_ts(tmp_path / "Var_TEST.ts", *toy_series(4, 27))
    data = load_series(tmp_path, validation_split=0.0)
    assert data.x_train.shape[1:] == (20, 1) and data.x_test.shape[1:] == (20, 1)
    # A resampled ramp is still a ramp: linear interpolation keeps its shape.
    assert np.all(np.diff(data.x_test[0, :, 0]) * np.sign(data.x_test[0, -1, 0]) > -0.5)


def test_a_tsv_folder_loads_with_numeric_classes_in_order(tmp_path):
    rows = ["10\t1\t2\t3\t4", "2\t4\t3\t2\tNaN", "10\t0\t1\t2\t3", "2\t3\t2\t1\t0"]
    (tmp_path / "N_TRAIN.tsv").write_text("\n".join(rows) + "\n")
    (tmp_path / "N_TEST.tsv").write_text("\n".join(rows[:2]) + "\n")
    data = load_series(tmp_path, validation_split=0.0)
    assert data.class_names == ("2", "10") and data.x_train.shape[1:] == (4, 1)
    assert data.y_train.tolist() == [1, 0, 1, 0]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("@classLabel false\n@data\n1,2:a\n", "line 1: '@classLabel true"),
        ("@problemName X\n1,2,3:a\n", "line 2: values before @data"),
        ("@classLabel true a b\n", "no '@data' line"),
        ("@dimensions 2\n@classLabel true a\n@data\n1,2,3:a\n", "line 4: 1 dimensions"),
        ("@classLabel true a\n@data\n1,2:3,4:a\n1,2:a\n", "line 4: 1 dimensions"),
        ("@classLabel true a\n@data\n1,?,3:a\n", "line 3: a missing value ('?')"),
        ("@classLabel true a\n@data\n1,NaN,3:a\n", "line 3: a missing value ('NaN')"),
        ("@classLabel true a b\n@data\n1,2,3:c\n", "line 3: class label 'c' is not among"),
        ("@classLabel true a\n@data\n1,x,3:a\n", "line 3: 'x' is not a number"),
    ],
)
def test_malformed_ts_files_are_refused_naming_file_and_line(tmp_path, body, expected):
    path = tmp_path / "Bad_TRAIN.ts"
    path.write_text(body)
    with pytest.raises(DataError, match="Bad_TRAIN.ts") as error:
        read_ts(path)
    assert expected in str(error.value)


def test_a_training_file_without_its_test_file_is_refused(tmp_path):
    write_ts(tmp_path / "Solo_TRAIN.ts", *toy_series(4, 8))
    with pytest.raises(DataError, match="Solo_TEST.ts"):
        kr.load_dataset(tmp_path)


def test_cli_refuses_bad_series_before_creating_the_output_folder(tmp_path, capsys):
    folder = write_dataset(tmp_path / "Short", steps=6)
    out = tmp_path / "run"
    # Six steps cannot be halved five times (ResNet-18's stem and stages).
    argv = ["train", "--model", "resnet18", "--dataset", str(folder), "--out", str(out)]
    assert main(argv) == 2
    assert "too small" in capsys.readouterr().err and not out.exists()
    (folder / "Toy_TEST.ts").write_text("@classLabel true up\n@data\n1,2:sideways\n")
    argv[2] = "resnet_series"
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Toy_TEST.ts, line 3" in err and "'sideways'" in err and not out.exists()


@pytest.mark.slow
def test_train_fits_wangs_resnet_on_a_series_folder_saves_and_exports_it(tmp_path, capsys):
    folder = write_dataset(tmp_path / "Ramps", count=64, steps=24)
    out = tmp_path / "run"
    argv = ["train", "--model", "resnet_series", "--dataset", str(folder), "--epochs", "8"]
    assert main([*argv, "--out", str(out), "--lr", "0.003"]) == 0
    printed = capsys.readouterr().out
    accuracy = float(printed.split("test accuracy:")[1].split()[0])
    assert accuracy >= 0.9  # rising vs falling ramps: learnt in 32 steps
    model = keras.saving.load_model(out / "best_model.keras", safe_mode=True)
    assert model.input_shape == (None, 24, 1) and model.output_shape == (None, 2)
    assert model.get_layer("stage3_block1").kernel_size == (8, 5, 3)
    # Deployable like an image model: the export checks its outputs against the model's.
    assert main(["export", str(out / "best_model.keras"), "--out", str(tmp_path / "m.tflite"),
                 "--format", "tflite"]) == 0  # fmt: skip
    assert (tmp_path / "m.tflite").stat().st_size > 0


def _reference_wang_resnet(input_shape, classes, n=64):
    """The ResNet of Ismail Fawaz et al.'s dl-4-tsc (`classifiers/resnet.py`) in plain
    keras.layers."""
    layers = keras.layers
    inputs = keras.Input(input_shape)

    def block(x, filters, expand):
        y = x
        for size in (8, 5, 3):
            y = layers.BatchNormalization()(layers.Conv1D(filters, size, padding="same")(y))
            y = layers.Activation("relu")(y) if size != 3 else y
        shortcut = layers.Conv1D(filters, 1, padding="same")(x) if expand else x
        return layers.Activation("relu")(layers.add([layers.BatchNormalization()(shortcut), y]))

    x = block(block(block(inputs, n, True), 2 * n, True), 2 * n, False)
    x = layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, layers.Dense(classes, activation="softmax")(x))


@pytest.mark.parametrize(("shape", "classes"), [((150, 1), 2), ((100, 6), 4), ((None, 12), 9)])
def test_wangs_resnet_has_the_reference_implementations_parameters(shape, classes):
    reference = _reference_wang_resnet(shape, classes)
    model = kr.build("resnet_series", input_shape=shape, num_classes=classes)
    assert model.count_params() == reference.count_params()

    def shapes(network):
        return sorted(tuple(w.shape) for w in network.trainable_weights)

    assert shapes(model) == shapes(reference)
    plain = kr.build("plain_series", input_shape=shape, num_classes=classes)
    assert plain.count_params() < model.count_params()
    assert not any(isinstance(layer, kr.IdentityShortcut) for layer in plain.layers)


def test_residual_adds_the_shortcut_in_pre_and_post_norm_orderings():
    x = np.random.default_rng(0).normal(size=(2, 5, 4)).astype("float32")
    dense = keras.layers.Dense(4)
    pre = kr.Residual(dense, norm="pre")
    y = keras.ops.convert_to_numpy(pre(x))
    expected = x + keras.ops.convert_to_numpy(dense(pre.norm_layer(x)))
    np.testing.assert_allclose(y, expected, atol=1e-6)
    post = kr.Residual(keras.layers.Dense(4), norm="post")
    z = keras.ops.convert_to_numpy(post(x))
    unnormed = x + keras.ops.convert_to_numpy(post.inner(x))
    np.testing.assert_allclose(z, keras.ops.convert_to_numpy(post.norm_layer(unnormed)), atol=1e-5)
    widen = kr.Residual(keras.layers.Dense(6))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(widen(x)),
        keras.ops.convert_to_numpy(widen.inner(x) + widen.projection(x)),
        atol=1e-6,
    )


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: kr.Residual(keras.layers.LSTM(4)), "return_sequences=True"),
        (lambda: kr.Residual(keras.layers.Conv1D(4, 3, strides=2)), "keep the input's shape"),
        (lambda: kr.Residual(keras.layers.Dense(6), shortcut="identity"), "shortcut='identity'"),
        (lambda: kr.Residual("dense"), "`inner` must be a Keras layer"),
        (lambda: kr.Residual(keras.layers.Dense(4), norm="middle"), "`norm`"),
        (lambda: kr.Residual(keras.layers.Dense(4), drop_path_rate=1.5), "`drop_path_rate`"),
    ],
)
def test_residual_rejects_what_cannot_be_added(make, expected):
    with pytest.raises(ValueError, match=expected.replace("(", r"\(").replace("'", "'")):
        make()(np.ones((2, 6, 4), "float32"))


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"input_shape": (32, 1), "stem": "whiten"}, "images only"),
        ({"kernel_size": (8, 5, 3), "block": "bottleneck"}, "only basic blocks"),
        ({"kernel_size": 0}, "`kernel_size`"),
        ({"input_shape": (3, 1), "strides": (1, 2, 2)}, "at least 4 steps"),
    ],
)
def test_series_specs_reject_what_a_sequence_cannot_take(changes, expected):
    with pytest.raises(ValueError, match=expected):
        kr.ResNetSpec(**changes)
    with pytest.raises(ValueError, match="image networks"):
        kr.DenseNetSpec(input_shape=(32, 3))


@pytest.mark.slow
def test_search_on_a_series_folder_takes_the_series_space_and_saves_its_best(tmp_path, capsys):
    from keras_residual.search import SearchConfig
    from keras_residual.search.space import resolve_space

    folder = write_dataset(tmp_path / "Ramps", count=24, steps=16)
    config = SearchConfig.for_dataset(folder)
    assert (config.time_budget, config.epochs, config.min_final_epochs) == ("10m", 30, 60)
    assert config.max_final_epochs == 300  # past it, a few dozen series over-train
    assert config.final_recipe is None  # the published recipe measured no better by default
    assert resolve_space("series")["kernel_size"][0] == "8,5,3"  # Wang et al.'s block first
    out = tmp_path / "search"
    argv = ["search", "--dataset", str(folder), "--out", str(out), "--epochs", "2"]
    argv += ["--max-trials", "1", "--time-budget", "none", "--final-epochs", "2"]
    argv += ["--width", "8", "--blocks-per-stage", "1", "--in-process", "--ensemble", "2"]
    argv += ["--final-recipe", "wang2017", "--final-recipe-epochs", "2"]  # no budget: it fits
    assert config.ensemble == 5  # without --ensemble; no budget: all of them
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    best = results["best"]
    assert best["retrained_epochs"] == 2 and best["retrain_recipe"] == "wang2017"
    assert {t["kernel_size"] for t in results["trials"]} <= {"8,5,3", "5,5", "3,3"}
    model = keras.saving.load_model(out / "best_model.keras", safe_mode=True)
    assert model.input_shape == (None, 16, 1)
    # The saved model averages two copies, seeds 0 and 1: each alone was tested too.
    assert best["ensemble_size"] == 2 and len(best["member_test_accuracy"]) == 2
    first, second = (model.get_layer(f"member_{k}") for k in range(2))
    assert first.count_params() == second.count_params() == best["params"] // 2
    assert not np.array_equal(first.get_layer("predictions").kernel.numpy(),
                              second.get_layer("predictions").kernel.numpy())  # fmt: skip
    assert 0 <= best["test_accuracy"] <= 1
    assert "the average of 2 copies (each alone: " in capsys.readouterr().out


def test_a_series_search_tries_wangs_resnet_first_then_draws_as_keras_tuner_does(tmp_path):
    from keras_residual.search import ResidualHyperModel
    from keras_residual.search.tuner import BayesianOptimization, Hyperband, RandomSearch

    hypermodel = ResidualHyperModel((40, 2), 3)
    [(name, values)] = hypermodel.baselines()
    hp = keras_tuner.HyperParameters()
    hypermodel.declare(hp)
    hp.values.update(values)
    preset = kr.build("resnet_series", input_shape=(40, 2), num_classes=3)
    assert hypermodel.spec(hp).replace(name=preset.spec.name) == preset.spec  # the preset itself
    assert hypermodel.recipe_for(hp) == kr.get_recipe(kr.preset_info(name).recipe)
    for kind, first in ((RandomSearch, True), (BayesianOptimization, True), (Hyperband, False)):
        options = {"max_epochs": 3} if kind is Hyperband else {"max_trials": 3}
        tuner = kind(hypermodel, objective="val_accuracy", directory=tmp_path / kind.__name__,
                     first_values=values, isolate_trials=False, **options)  # fmt: skip
        drawn = [tuner.oracle.create_trial(f"t{i}").hyperparameters.values for i in range(2)]
        assert ({k: drawn[0][k] for k in values} == values) == first, kind
        assert {k: drawn[1][k] for k in values} != values  # drawn, not the preset again
    narrowed = ResidualHyperModel((40, 2), 3, width=[16, 32])
    assert narrowed.baselines() == []  # a space without the preset searches as it was


def test_a_series_trial_times_the_batches_a_tenth_of_its_series_makes(tmp_path, monkeypatch):
    from keras_residual.search import ResidualHyperModel, trials

    write_dataset(tmp_path / "Toy", count=40, steps=16)
    data = kr.load_dataset(tmp_path / "Toy", validation_split=0.1)
    hypermodel = ResidualHyperModel((16, 1), 2, width=8, blocks_per_stage=1)
    hp = keras_tuner.HyperParameters()
    hypermodel.declare(hp)
    assert hypermodel.recipe_for(hp).batch_size == 16  # at most 16 ...
    batches, train = [], trials.train

    def recording(model, data, *, recipe, **options):
        batches.append(recipe.batch_size)
        return train(model, data, recipe=recipe, **options)

    monkeypatch.setattr(trials, "train", recording)
    record = trials.fit_trial(hypermodel, hp, hypermodel.build(hp), data, epochs=1, verbose=0)
    assert batches == [3]  # ... a tenth of 36: the batch its costs per image are timed with
    assert record["train_examples"] == 36


def test_an_npz_of_series_loads_as_sequences(tmp_path):
    series, labels = toy_series(20, 16, dims=3)
    x, y = np.stack(series), np.array([label == "up" for label in labels], int)
    np.savez(tmp_path / "uni.npz", x_train=x[..., 0], y_train=y)  # (n, steps): univariate
    assert kr.load_dataset(tmp_path / "uni.npz").input_shape == (16, 1)
    np.savez(tmp_path / "multi.npz", x_train=x, y_train=y, layout="series")
    data = kr.load_dataset(tmp_path / "multi.npz")
    assert data.input_shape == (16, 3) and data.x_train.dtype == np.float32
    np.savez(tmp_path / "odd.npz", x_train=x, y_train=y, layout="sequence")
    with pytest.raises(DataError, match="odd.npz: layout must be 'images' or 'series'"):
        kr.load_dataset(tmp_path / "odd.npz")


def test_the_tcn_is_causal_and_reports_its_receptive_field():
    spec = kr.tcn_spec((64, 2), 3, levels=4, width=8)
    assert spec.receptive_field == 1 + 2 * (3 - 1) * (2**4 - 1)
    features = kr.build_network(spec.replace(include_top=False, pooling=None))
    x = np.random.default_rng(0).normal(size=(2, 64, 2)).astype("float32")
    later = x.copy()
    later[:, 40:] += 5.0  # change the future
    y, y_later = (keras.ops.convert_to_numpy(features(v)) for v in (x, later))
    np.testing.assert_array_equal(y[:, :40], y_later[:, :40])  # the past does not see it
    assert not np.allclose(y[:, 40:], y_later[:, 40:])
    # A step's output sees exactly `receptive_field` steps back: a change there reaches it.
    reach = x.copy()
    reach[:, 63 - spec.receptive_field + 1] += 5.0
    assert not np.allclose(keras.ops.convert_to_numpy(features(reach))[:, 63], y[:, 63])
    blocks = [layer for layer in features.layers if isinstance(layer, kr.BasicBlock)]
    assert [b.dilation_rate for b in blocks] == [1, 2, 4, 8] and all(b.causal for b in blocks)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: kr.BasicBlock(8, strides=2, dilation_rate=2), "both dilate"),
        (lambda: kr.ResNetSpec(dilations=(1, 2, 2)), "Stage 2 both dilates and strides"),
        (lambda: kr.ResNetSpec(dilations=(1, 2)), "one entry per stage"),
        (lambda: kr.ResNetSpec(causal=True), "`causal` convolutions are for sequences"),
        (lambda: kr.BasicBlock(8, causal=True)(np.ones((1, 4, 4, 8), "float32")), "sequences"),
    ],
)
def test_dilation_and_causality_reject_what_they_cannot_do(make, expected):
    with pytest.raises(ValueError, match=expected):
        make()
