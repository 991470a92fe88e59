"""Malformed calls, hard stops and damaged state files (issue: the defects an outside fuzz
found). Each asserts a clear error naming the argument or file, and that nothing is left
behind or lost."""

import json
import os
import signal
import subprocess
import sys
import time
from importlib.util import find_spec

import numpy as np
import pytest
from conftest import FINISHED_SEARCH, learnable_images

import keras_residual as kr
from keras_residual._files import write_text_atomically
from keras_residual.search import run_search
from keras_residual.training import TrainingDiverged
from keras_residual_cli import build_parser, main

TINY = {"width": [4, 6], "blocks_per_stage": 1}


# --- Python API ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: kr.Recipe(learning_rate=float("inf")), "`learning_rate` must be a finite"),
        (lambda: kr.Recipe(learning_rate=float("nan")), "`learning_rate`"),
        (lambda: kr.Recipe(weight_decay=float("nan")), "`weight_decay`"),
        (lambda: kr.Recipe(weight_decay=-1e-4), "`weight_decay`"),
        (lambda: kr.Recipe(warmup_epochs=float("inf")), "`warmup_epochs`"),
        (lambda: kr.resnet_cifar(8, block="dense"), "`block` must be one of"),
        (lambda: kr.build(123), "preset name must be a string"),
        (lambda: kr.resnet_cifar(8, input_shape=(28, 28, 0)), "`input_shape`"),
        (lambda: kr.resnet_cifar(8, input_shape=(28, 28, None)), "`input_shape`"),
        (lambda: kr.resnet_cifar(8, input_shape=("a", 28, 1)), "`input_shape`"),
        (lambda: kr.resnet_cifar(8, norm=kr.Norm(epsilon=-1e-3)), "`epsilon`"),
        (lambda: kr.BasicBlock(8, bn_epsilon=-1e-3), "`bn_epsilon`"),
        (lambda: kr.BottleneckBlock(8, stride_in_1x1="yes"), "`stride_in_1x1`"),
        (lambda: kr.GatedShortcut(gate_bias=float("nan")), "`gate_bias` must be a finite"),
        (lambda: kr.DropPath(0.1, seed=-1), "`seed`"),
        (lambda: kr.resolve_dtype("bogus"), "`dtype` must be 'auto' or one of"),
        (lambda: kr.get_recipe("hlb_cifar10"), "`recipe` must be one of .*'fast_cifar'"),
        (lambda: kr.get_recipe("fast_cifar", mixup=0.2), "no field 'mixup'; its fields: .*cutout"),
        (lambda: kr.Recipe(tta="crops"), "`tta` must be one of 'none', 'flip'"),
        (lambda: kr.Recipe(cutout=-8), "`cutout`"),
        (lambda: kr.Recipe(flip="sometimes"), "`flip` must be one of False, True, 'alternate'"),
        (lambda: kr.Recipe(ema=float("nan")), "`ema`"),
        (lambda: kr.PatchWhitening(epsilon=0), "`epsilon`"),
        (lambda: kr.PatchWhitening(padding="full"), "`padding`"),
        (lambda: kr.fast_cifar_spec("xl"), "`size` must be one of 's', 'm', 'l'"),
        (lambda: kr.ResNetSpec(downsample="avg"), "`downsample` must be one of"),
    ],
)
def test_bad_api_arguments_name_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.array([np.nan] + [1.0] * 9), "y_train must be whole class numbers in 0..9; got nan"),
        (np.array([3.7] + [1.0] * 9), "got 3.7"),
        (np.array(["cat"] * 10), "got 'cat'"),
        (np.array([10] * 10), "got 10"),
    ],
)
def test_bad_labels_are_refused_naming_the_file(tmp_path, labels, message):
    x = np.zeros((10, 28, 28), "uint8")
    path = tmp_path / "mnist" / "mnist.npz"
    path.parent.mkdir()
    np.savez(path, x_train=x, y_train=labels, x_test=x, y_test=np.zeros(10, "uint8"))
    with pytest.raises(kr.DataError, match=message) as error:
        kr.load_dataset("mnist", tmp_path)
    assert str(path) in str(error.value)


def test_empty_arrays_and_mismatched_lengths_are_refused():
    x, y = np.zeros((4, 8, 8, 1), "uint8"), np.zeros(4, "int32")
    with pytest.raises(kr.DataError, match="y_train is empty"):
        kr.Dataset("mnist", x[:0], y[:0], x, y, x, y, ("0", "1"))
    with pytest.raises(kr.DataError, match="x_val has 4 images but y_val 3 labels"):
        kr.Dataset("mnist", x, y, x, y[:3], x, y, ("0", "1"))


def test_an_npy_file_named_npz_and_a_folder_named_npz_are_explained(tmp_path):
    (tmp_path / "mnist").mkdir()
    np.save(tmp_path / "mnist" / "mnist.npy", np.zeros(3))
    os.rename(tmp_path / "mnist" / "mnist.npy", tmp_path / "mnist" / "mnist.npz")
    with pytest.raises(kr.DataError, match="single array.*np.savez"):
        kr.load_dataset("mnist", tmp_path)
    (tmp_path / "cifar10" / "cifar10.npz").mkdir(parents=True)
    with pytest.raises(kr.DataError, match="cifar10.npz is a folder"):
        kr.load_dataset("cifar10", tmp_path)


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"width": {"min": 4, "max": 8, "step": 0}}, "`width.step` must be a finite number > 0"),
        (
            {"weight_decay": {"min": 1e-5, "max": 1e-3, "sampling": "cubic"}},
            "`weight_decay.sampling`",
        ),
        ({"width": {"min": 4, "max": float("inf")}}, "`width.max` must be a finite"),
        ({"learning_rate": float("nan")}, "`learning_rate`"),
    ],
)
def test_a_bad_space_leaves_no_directory(tmp_path, data_dir, space, message):
    out = tmp_path / "never"
    with pytest.raises(ValueError, match=message):
        run_search("mnist", out, data_dir=data_dir, space=space)
    assert not out.exists()


def _tiny_data():
    x, y = learnable_images(64, (8, 8, 1))
    return kr.Dataset("mnist", x, y, x[:16], y[:16], x[:16], y[:16], tuple("0123456789"))


def test_diverging_training_raises_and_saves_no_model(tmp_path):
    data, out = _tiny_data(), tmp_path / "run"
    model = kr.resnet_cifar(8, data.input_shape, 10, width=4)
    recipe = kr.get_recipe("fast", learning_rate=1e30, batch_size=16)
    with pytest.raises(TrainingDiverged, match="diverged"):
        kr.train(model, data, epochs=2, recipe=recipe, out_dir=out, verbose=0)
    assert not (out / "best_model.keras").exists() and not (out / "last_model.keras").exists()


def test_resuming_a_run_with_another_model_or_recipe_is_refused(tmp_path):
    data, out = _tiny_data(), tmp_path / "run"
    recipe = kr.get_recipe("fast", batch_size=16)
    kr.train(
        kr.resnet_cifar(8, (8, 8, 1), 10, width=4), data, recipe=recipe, out_dir=out, verbose=0
    )
    (out / "backup").mkdir(exist_ok=True)  # as an interrupted run leaves it
    saved = (out / "recipe.json").read_text()
    other = kr.resnet_cifar(14, (8, 8, 1), 10, width=4)
    with pytest.raises(ValueError, match="holds a run of model 'resnet8'"):
        kr.train(other, data, recipe=recipe, out_dir=out, resume=True, verbose=0)
    same = kr.resnet_cifar(8, (8, 8, 1), 10, width=4)
    faster = kr.get_recipe(recipe, learning_rate=0.5)
    with pytest.raises(ValueError, match="another recipe \\(learning_rate differ"):
        kr.train(same, data, recipe=faster, out_dir=out, resume=True, verbose=0)
    assert (out / "recipe.json").read_text() == saved  # the run's recipe is kept


@pytest.mark.slow
def test_exhausted_space_is_said_and_a_finished_search_is_not_retrained(data_dir, tmp_path, capsys):
    out = tmp_path / "small"
    space = {"width": 4, "blocks_per_stage": [1, 2]}  # two configurations
    options = {"data_dir": data_dir, "verbose": 0, "space": space, "isolate_trials": False}
    run_search("mnist", out, max_trials=5, **options)
    assert "holds 2 distinct configurations: all were tried" in capsys.readouterr().out
    saved = (out / "best_model.keras").stat().st_mtime_ns
    again = run_search("mnist", out, max_trials=5, resume=True, **options)
    assert "finished" in capsys.readouterr().out and len(again["trials"]) == 2
    assert (out / "best_model.keras").stat().st_mtime_ns == saved  # not retrained
    # A search finished before `image_size` was recorded is still this search, finished.
    recorded = json.loads((out / "finished.json").read_text())
    del recorded["image_size"]
    (out / "finished.json").write_text(json.dumps(recorded))
    run_search("mnist", out, max_trials=5, resume=True, **options)
    assert "finished" in capsys.readouterr().out
    assert (out / "best_model.keras").stat().st_mtime_ns == saved


# --- Command line ---------------------------------------------------------------------


@pytest.fixture
def npy_dir(tmp_path):
    (tmp_path / "npy" / "mnist").mkdir(parents=True)
    with open(tmp_path / "npy" / "mnist" / "mnist.npz", "wb") as handle:
        np.save(handle, np.zeros(3))
    return tmp_path / "npy"


def _space_file(tmp_path, name, space):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(space))
    return str(path)


CLI_CASES = {
    "lr_inf": (["train", "--lr", "inf"], "`learning_rate`"),
    "lr_nan": (["train", "--lr", "nan"], "`learning_rate`"),
    "negative_decay": (["train", "--weight-decay", "-1"], "`weight_decay`"),
    "unknown_model": (["train", "--model", "resnet21"], "resnet20"),
    "out_under_a_file": (["train", "--out", "/dev/null/x"], "/dev/null is not a folder"),
    "npy_as_npz": (["train", "--data-dir", "{npy}"], "single array"),
    "space_step_zero": (["search", "--space", "{step0}"], "`width.step`"),
    "space_cubic": (["search", "--space", "{cubic}"], "`weight_decay.sampling`"),
    "budget_inf": (["search", "--time-budget", "inf"], "`time_budget`"),
    "width_zero": (["search", "--width", "0"], "`width`"),
    "activation_unknown": (["search", "--activation", "relu,swish"], "`activation`"),
    "trial_share_one": (
        ["search", "--final-epochs", "auto", "--trial-share", "1"],
        "`trial_share`",
    ),
    "min_final_epochs_zero": (["search", "--min-final-epochs", "0"], "`min_final_epochs`"),
    "search_out_under_a_file": (["search", "--out", "/dev/null/x"], "/dev/null is not a folder"),
    "corrupt_model": (["evaluate", "{corrupt}"], "is not a .keras model"),
    "missing_model": (["evaluate", "{missing}"], "no such file"),
    "report_nothing": (["report", "{missing}"], "holds no search"),
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_cli_mistakes_are_one_line_exit_2_and_leave_nothing(
    case, tmp_path, npy_dir, data_dir, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corrupt.keras").write_text("not a model")
    names = {
        "npy": npy_dir,
        "step0": _space_file(tmp_path, "step0", {"width": {"min": 4, "max": 8, "step": 0}}),
        "cubic": _space_file(
            tmp_path, "cubic", {"weight_decay": {"min": 1e-5, "max": 1, "sampling": "cubic"}}
        ),
        "corrupt": tmp_path / "corrupt.keras",
        "missing": tmp_path / "missing",
    }
    argv, message = CLI_CASES[case]
    argv = [a.format(**names) for a in argv]
    if argv[0] in ("train", "search") and "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    if argv[0] in ("train", "search") and "--data-dir" not in argv:
        argv += ["--data-dir", str(data_dir)]
    before = set(os.listdir(tmp_path))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("keras-residual: error:") and message in err[0]
    assert set(os.listdir(tmp_path)) == before  # nothing written


def test_cli_final_epochs_are_a_number_or_auto(capsys):
    parser = build_parser()
    assert parser.parse_args(["search", "--final-epochs", "auto"]).final_epochs == "auto"
    assert parser.parse_args(["search", "--final-epochs", "5"]).final_epochs == 5
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["search", "--final-epochs", "soon"])
    assert exit_info.value.code == 2
    assert "--final-epochs: expected a number of epochs or 'auto'" in capsys.readouterr().err


def test_cli_bad_dtype_environment_is_an_argument_error(monkeypatch, capsys):
    monkeypatch.setenv("KERAS_RESIDUAL_DTYPE", "bogus")
    with pytest.raises(SystemExit) as exit_info:
        main(["train"])
    assert exit_info.value.code == 2
    assert "$KERAS_RESIDUAL_DTYPE='bogus'" in capsys.readouterr().err


def test_cli_diverging_training_exits_1_without_a_model(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--model", "resnet20", "--data-dir", str(data_dir), "--lr", "1e30"]
    assert main([*argv, "--out", str(out), "--batch-size", "64", "--dtype", "float32"]) == 1
    assert "diverged" in capsys.readouterr().err
    assert not (out / "best_model.keras").exists()


def test_help_and_argument_errors_need_no_tensorflow():
    probe = (
        "import sys, contextlib, io\n"
        "from keras_residual_cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try: main(['--help'])\n"
        "    except SystemExit: pass\n"
        "with contextlib.redirect_stderr(io.StringIO()):\n"
        "    try: main(['train', '--epochs', 'many'])\n"
        "    except SystemExit as e: assert e.code == 2\n"
        "print(sorted(m for m in ('tensorflow', 'keras', 'keras_residual') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# --- State files ------------------------------------------------------------------------


def _resume(data_dir, out):
    """Resume the copy of conftest's finished search in `out`."""
    options = {"data_dir": data_dir, "verbose": 0, "isolate_trials": False}
    return run_search("mnist", out, resume=True, **options, **FINISHED_SEARCH)


@pytest.mark.slow
def test_damaged_trial_files_are_named_and_their_trials_rerun(data_dir, finished_copy, capsys):
    out = finished_copy
    (out / "finished.json").unlink()  # as if killed before the end
    trials = [out / "tuner" / f"trial_{i}" / "trial.json" for i in (0, 1)]
    trials[0].write_text("null")  # JSON, but not a trial's state
    trials[1].write_text(trials[1].read_text()[:100])  # truncated
    assert main(["report", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("unreadable") >= 2
    for trial in trials:
        assert f"{trial} (the trial's state) is truncated or corrupt" in printed
    result = _resume(data_dir, out)
    printed = capsys.readouterr().out
    for trial_id, trial in enumerate(trials):
        assert f"{trial} was truncated or corrupt" in printed
        assert f"trial {trial_id} runs again" in printed
        assert trial.with_name("trial.json.corrupt").exists()
    assert [r["status"] for r in result["trials"]] == ["completed"] * 3


@pytest.mark.parametrize(
    ("damaged", "message", "text"),
    [
        ("tuner/oracle.json", "keras-tuner's oracle state", ""),
        ("search.json", "the search's settings", ""),
        ("search.json", "the search's settings", "null"),  # JSON, but not settings
    ],
)
def test_a_damaged_search_state_file_is_named_with_the_way_out(
    data_dir, finished_copy, capsys, damaged, message, text
):
    out = finished_copy
    (out / "finished.json").unlink()
    (out / damaged).write_text(text)
    with pytest.raises(ValueError, match=f"{out / damaged} \\({message}\\) is truncated") as e:
        _resume(data_dir, out)
    assert "keras-residual report" in str(e.value) and "new --out" in str(e.value)
    capsys.readouterr()
    assert main(["report", str(out)]) == 0  # the finished trials are intact
    printed = capsys.readouterr().out
    assert "trial" in printed and ("without its constraint line" in printed) == (
        damaged == "search.json"
    )


# keras-tuner's writer needs no TensorFlow, which takes longer to start than Keras on NumPy
# (whose backend needs JAX, not installed for every test run).
WRITER_ENV = {**os.environ, **({"KERAS_BACKEND": "numpy"} if find_spec("jax") else {})}


@pytest.mark.slow
def test_state_writes_survive_kill_9_at_any_moment(tmp_path):
    target = tmp_path / "state.json"
    writer = (
        "import sys, json\n"
        "from keras_tuner.src import utils\n"
        "from keras_residual import _thirdparty\n"
        "_thirdparty.make_keras_tuner_writes_atomic()\n"
        "i = 0\n"
        "while True:\n"
        "    i += 1\n"
        "    utils.save_json(sys.argv[1], {'i': i, 'pad': 'x' * 2_000_000})\n"
    )
    rng = np.random.default_rng(0)
    for _ in range(4):
        target.unlink(missing_ok=True)
        process = subprocess.Popen([sys.executable, "-c", writer, str(target)], env=WRITER_ENV)
        deadline = time.monotonic() + 60
        while not target.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert target.exists(), f"the writer wrote nothing (exit code {process.poll()})"
        time.sleep(rng.uniform(0.05, 0.5))
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert json.loads(target.read_text())["i"] >= 1  # the last file written, whole
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "state.json"]
    assert all(name.startswith(".state.partial-") for name in leftovers)  # at most temp files


def test_an_interrupted_atomic_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "search.json"
    write_text_atomically(target, '{"old": true}')

    def crash(_):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(KeyboardInterrupt):
        write_text_atomically(target, '{"new": true}')
    assert json.loads(target.read_text()) == {"old": True}
    assert os.listdir(tmp_path) == ["search.json"]
