import time

import keras
import pytest

from keras_residual_cli import DTYPE_ENV, main


@pytest.mark.slow
def test_train_then_evaluate(data_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(DTYPE_ENV, "")  # --dtype sets it; restored after the test
    out = tmp_path / "run"
    argv = ["train", "--model", "resnet20", "--dataset", "mnist", "--data-dir", str(data_dir)]
    argv += ["--epochs", "1", "--batch-size", "64", "--out", str(out), "--dtype", "float32"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "test accuracy:" in printed and (out / "best_model.keras").exists()
    model = str(out / "best_model.keras")
    assert keras.saving.load_model(model).get_layer("stem_conv").compute_dtype == "float32"
    assert main(["evaluate", model, "--dataset", "mnist", "--data-dir", str(data_dir)]) == 0
    assert "test accuracy:" in capsys.readouterr().out
    argv = ["evaluate", model, "--dataset", "mnist", "--data-dir", str(data_dir), "--tta", "flip"]
    assert main(argv) == 0
    assert "(tta: flip)" in capsys.readouterr().out


def test_train_seed_fixes_the_initial_weights(data_dir, monkeypatch):
    import numpy as np

    import keras_residual as kr

    initial = []  # each run's weights as training starts
    monkeypatch.setattr(
        kr,
        "train",
        lambda model, data, **_: initial.append(keras.ops.convert_to_numpy(model.weights[0])),
    )
    argv = ["train", "--model", "resnet20", "--dataset", "mnist", "--data-dir", str(data_dir)]
    for seed in (3, 3, 4):
        assert main([*argv, "--epochs", "1", "--seed", str(seed)]) == 0
    assert np.array_equal(initial[0], initial[1]) and not np.array_equal(initial[0], initial[2])


def test_train_for_a_time_budget_paces_the_planned_epochs(data_dir, monkeypatch, capsys):
    """`--time-budget` counts from the command's start: what is left once TensorFlow has
    loaded, the data is read and the network built is the training's `seconds`. Without
    --epochs, the schedule has nothing to be planned for: refused before TensorFlow loads."""
    import keras_residual as kr

    given, real = {}, kr.train

    def briefly(model, data, **options):  # the options recorded, the run paced to 1 s
        given.update(options)
        return real(model, data, **{**options, "seconds": 1.0, "verbose": 0})

    monkeypatch.setattr(kr, "train", briefly)
    argv = ["train", "--model", "resnet20", "--dataset", "mnist", "--data-dir", str(data_dir)]
    assert main([*argv, "--epochs", "3", "--time-budget", "1m"]) == 0
    assert given["epochs"] == 3 and 50 < given["seconds"] < 60
    printed = capsys.readouterr().out
    assert "Training for the" in printed and "Trained " in printed and "test accuracy" in printed
    # From an earlier start: `python -m keras_residual` passes when the package began to load.
    started = time.monotonic() - 30
    assert main([*argv, "--epochs", "3", "--time-budget", "1m"], started=started) == 0
    assert 20 < given["seconds"] < 30
    capsys.readouterr()
    assert main([*argv, "--time-budget", "1m"]) == 2
    assert "--time-budget needs --epochs" in capsys.readouterr().err
    assert main([*argv, "--epochs", "3", "--time-budget", "soon"]) == 2
    assert "`--time-budget` must look like 90s" in capsys.readouterr().err


def test_a_search_budget_counts_from_the_command_start(data_dir, tmp_path, monkeypatch):
    from keras_residual_cli import commands

    given, toolkit = {}, commands._toolkit

    def loading(args):  # when the command loads the toolkit (and TensorFlow with it)
        given["loaded"] = time.monotonic()
        return toolkit(args)

    monkeypatch.setattr(commands, "_toolkit", loading)
    monkeypatch.setattr("keras_residual.search.run_search", lambda *a, **kw: given.update(kw))
    before = time.monotonic()
    argv = ["search", "--time-budget", "1m", "--data-dir", str(data_dir)]
    assert main([*argv, "--out", str(tmp_path / "s")]) == 0
    assert before <= given["started"] <= given["loaded"]


def test_command_line_choices_are_the_toolkits():
    from keras_residual.precision import POLICIES
    from keras_residual.techniques import TTA_MODES as TOOLKIT_TTA_MODES
    from keras_residual_cli import DTYPES, TTA_MODES

    assert TTA_MODES == TOOLKIT_TTA_MODES
    assert set(DTYPES) - {"auto"} <= set(POLICIES)


def test_missing_data_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "--dataset", "cifar10", "--data-dir", str(tmp_path)]) == 2
    assert "cifar10/cifar10.npz" in capsys.readouterr().err


def test_unknown_model_suggests_close_names(data_dir, capsys):
    assert main(["train", "--model", "resnet21", "--data-dir", str(data_dir)]) == 2
    assert "resnet20" in capsys.readouterr().err


def test_bad_command_line_exits_with_usage():
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--epochs", "many"])
    assert exit_info.value.code == 2


def test_search_flags_take_choices_of_a_count_a_stage(tmp_path, monkeypatch):
    import keras_residual.search

    spaces = []
    monkeypatch.setattr(
        keras_residual.search, "run_search", lambda config, out, **_: spaces.append(config.space)
    )
    argv = ["search", "--dataset", "cifar10", "--out", str(tmp_path / "search")]
    assert main([*argv, "--blocks-per-stage", "1,1,1;1,0,1", "--width", "8,16"]) == 0
    assert main([*argv, "--blocks-per-stage", "1,0,1;"]) == 0
    assert main([*argv, "--blocks-per-stage", "1,2"]) == 0
    assert main([*argv, "--blocks-per-stage", "1,0,1;2"]) == 0
    per_stage = [["1,1,1", "1,0,1"], "1,0,1", [1, 2], ["1,0,1", "2"]]
    assert [space["blocks_per_stage"] for space in spaces] == per_stage
    assert spaces[0]["width"] == [8, 16]
    assert main([*argv, "--input-scale", "1,0.75"]) == 0
    assert main([*argv, "--input-scale", "auto"]) == 0
    assert [space["input_scale"] for space in spaces[-2:]] == [[1, 0.75], "auto"]
