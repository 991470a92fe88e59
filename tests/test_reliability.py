"""Nothing a user ran is lost: run folders are never overwritten or rewound, one process
writes a folder at a time, a failed write keeps the previous file, and `kill -9` at any
moment of `train` or `search` (inside a checkpoint write too) loses, changes or repeats no
finished epoch or trial. docs/reliability.md names these tests."""

import csv
import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import learnable_images

import keras_residual as kr
from keras_residual._files import FolderBusy, atomic_path, folder_lock, write_text_atomically
from keras_residual.search import run_search
from keras_residual_cli import main

TINY_SPACE = {"width": [4, 6], "blocks_per_stage": 1}


def _tiny_data():
    x, y = learnable_images(96, (8, 8, 1))
    return kr.Dataset(
        "mnist", x[:64], y[:64], x[64:80], y[64:80], x[80:], y[80:], tuple("0123456789")
    )


def _model():
    return kr.resnet_cifar(8, (8, 8, 1), 10, width=4)


RECIPE = kr.get_recipe("fast", batch_size=16)


def _train(out, epochs=1, model=None, **kwargs):
    return kr.train(
        model or _model(), _tiny_data(), epochs=epochs, recipe=RECIPE, out_dir=out, verbose=0,
        **kwargs,
    )  # fmt: skip


def _snapshot(folder: Path) -> dict:
    """Every file below `folder` (the lock file aside) with its bytes."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".lock" and "tensorboard" not in p.parts
    }


def _log_epochs(out: Path) -> list[int]:
    with open(out / "log.csv", newline="") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


# --- A run folder is never overwritten or rewound ---------------------------------------


def test_train_into_a_folder_holding_another_run_is_refused(tmp_path):
    out = tmp_path / "o"
    _train(out)
    before = _snapshot(out)
    deeper = kr.resnet_cifar(14, (8, 8, 1), 10, width=4)
    with pytest.raises(
        FileExistsError, match=r"holds another run \(1 epoch trained\).*--overwrite"
    ):
        _train(out, model=deeper)
    assert _snapshot(out) == before


def test_overwrite_replaces_the_run_and_only_its_files(tmp_path):
    out = tmp_path / "o"
    _train(out, epochs=2)
    (out / "notes.txt").write_text("mine")
    _train(out, overwrite=True)
    assert _log_epochs(out) == [0]
    assert (out / "notes.txt").read_text() == "mine"
    with pytest.raises(ValueError, match="exclude each other"):
        _train(out, resume=True, overwrite=True)


def test_resuming_a_finished_run_says_so_and_more_epochs_continue_it(tmp_path):
    out = tmp_path / "o"
    _train(out)
    before = _snapshot(out)
    with pytest.raises(kr.RunFinished, match=r"finished after 1 epochs.*--epochs N, N > 1"):
        _train(out, resume=True)
    assert _snapshot(out) == before  # not restarted: nothing rewritten
    model = _model()
    history = _train(out, epochs=2, model=model, resume=True)
    assert history.epoch == [1]  # continued, not restarted
    assert _log_epochs(out) == [0, 1]
    assert int(model.optimizer.iterations) == 2 * 4  # 64 images, batches of 16
    keras.saving.load_model(out / "best_model.keras", safe_mode=True)


@pytest.mark.slow
def test_cli_resume_of_a_finished_run_exits_0_and_changes_nothing(tmp_path, data_dir, capsys):
    out = tmp_path / "o"
    argv = ["train", "--data-dir", str(data_dir), "--batch-size", "128", "--out", str(out)]
    assert main(argv) == 0
    before = _snapshot(out)
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 0
    assert "finished after 1 epochs" in capsys.readouterr().out
    assert main([*argv, "--model", "plain20"]) == 2  # another run: refused
    assert "--overwrite" in capsys.readouterr().err
    assert _snapshot(out) == before


def test_a_paced_run_keeps_its_folder_and_refuses_to_resume(tmp_path):
    """A run paced to a time writes its folder as any run (models, log, run.json with the
    time), and a resume is refused with the model it kept named, changing nothing: its
    schedule followed the clock, which a resumed run could not repeat."""
    out = tmp_path / "paced"
    history = _train(out, epochs=2, seconds=1.5)
    assert json.loads((out / "run.json").read_text())["seconds"] == 1.5
    assert (out / "best_model.keras").exists() and (out / "last_model.keras").exists()
    assert _log_epochs(out) == history.epoch  # every epoch it trained, the last maybe partial
    before = _snapshot(out)
    with pytest.raises(ValueError, match="paced to 2 s: .* does not resume.*best_model.keras"):
        _train(out, epochs=4, resume=True)
    assert _snapshot(out) == before


def test_resume_without_out_is_an_error(capsys):
    with pytest.raises(ValueError, match="`resume` needs `out_dir`"):
        kr.train(_model(), _tiny_data(), resume=True, verbose=0)
    assert main(["train", "--resume"]) == 2
    assert "--resume needs --out" in capsys.readouterr().err


def test_train_and_search_refuse_each_others_folders(tmp_path, data_dir):
    out = tmp_path / "o"
    _train(out)
    with pytest.raises(ValueError, match="holds a training run, not a search"):
        run_search("mnist", out, max_trials=1, data_dir=data_dir, verbose=0, **TINY_SPACE)
    searched = tmp_path / "s"
    (searched / "tuner").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="holds a search, not a training run"):
        _train(searched, overwrite=True)


@pytest.mark.slow
def test_report_keeps_every_section_it_does_not_compute(finished_copy, capsys):
    before = json.loads((finished_copy / "results.json").read_text())
    assert main(["report", str(finished_copy)]) == 0
    after = json.loads((finished_copy / "results.json").read_text())
    assert after["best"] == before["best"] and after["config"] == before["config"]
    assert after["best"]["test_accuracy"] is not None
    assert [t["trial_id"] for t in after["trials"]] == [t["trial_id"] for t in before["trials"]]


def test_report_of_a_search_without_trials_is_an_error(tmp_path, capsys):
    (tmp_path / "s" / "tuner").mkdir(parents=True)
    assert main(["report", str(tmp_path / "s")]) == 2
    assert "no trial yet" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path / "s")) == ["tuner"]  # nothing written


# --- One writer per folder ----------------------------------------------------------------


def _holder(folder: Path) -> subprocess.Popen:
    """A process holding `folder`'s lock until it is killed."""
    probe = (
        "import sys, time\n"
        "from keras_residual._files import folder_lock\n"
        "with folder_lock(sys.argv[1]):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(600)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", probe, str(folder)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "held"
    return process


@pytest.mark.slow
def test_a_folder_a_live_process_writes_is_refused_with_its_id(tmp_path, data_dir):
    out = tmp_path / "o"
    holder = _holder(out)
    try:
        with pytest.raises(FolderBusy, match=f"being written by process {holder.pid}"):
            _train(out)
        with pytest.raises(FolderBusy, match=f"process {holder.pid}"):
            run_search("mnist", out, max_trials=1, data_dir=data_dir, verbose=0, **TINY_SPACE)
        assert sorted(os.listdir(out)) == [".lock"]  # nothing of either was written
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    _train(out)  # a killed holder leaves no stale lock behind
    assert _log_epochs(out) == [0]


def test_the_lock_is_released_when_its_holder_fails(tmp_path):
    with pytest.raises(RuntimeError), folder_lock(tmp_path):
        raise RuntimeError("the run failed")
    with folder_lock(tmp_path):
        pass


# --- Failed writes lose nothing -----------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (errno.ENOSPC, "No space left on device"),
        (errno.EACCES, "Permission denied"),
        (errno.EROFS, "Read-only file system"),
    ],
)
def test_a_failed_write_keeps_the_previous_file_and_says_why(tmp_path, monkeypatch, code, reason):
    target = tmp_path / "search.json"
    write_text_atomically(target, '{"old": true}')

    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match=f"could not write {target}: {reason}.*intact") as error:
        write_text_atomically(target, '{"new": true}')
    assert error.value.errno == code
    assert json.loads(target.read_text()) == {"old": True}
    assert os.listdir(tmp_path) == ["search.json"]  # no temporary file left


@pytest.mark.slow
def test_a_disk_full_during_training_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "o"
    _train(out)
    saved = (out / "best_model.keras").read_bytes()
    real_save = keras.Model.save

    def disk_full(self, path, *args, **kwargs):
        real_save(self, path, *args, **kwargs)  # the bytes are written, then the disk fills
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(keras.Model, "save", disk_full)
    with pytest.raises(OSError, match=r"could not write .*_model\.keras: No space left"):
        _train(out, epochs=2, resume=True)
    assert (out / "best_model.keras").read_bytes() == saved
    assert _log_epochs(out) == [0]
    assert not [p for p in out.iterdir() if p.name.startswith(".") and p.name != ".lock"]
    monkeypatch.undo()
    _train(out, epochs=2, resume=True)  # once there is room, the run goes on
    assert _log_epochs(out) == [0, 1]


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_files_are_created_with_the_users_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        write_text_atomically(tmp_path / "a.json", "{}")
        with atomic_path(tmp_path / "b.weights.h5") as temporary:
            temporary.write_bytes(b"x")
        (tmp_path / "plain.txt").write_text("{}")
    finally:
        os.umask(previous)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes == dict.fromkeys(("a.json", "b.weights.h5", "plain.txt"), 0o666 & ~umask)


def test_an_unreadable_state_file_is_not_called_corrupt(tmp_path, monkeypatch):
    path = tmp_path / "search.json"
    path.write_text("{}")

    def denied(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", denied)
    with pytest.raises(ValueError, match="cannot be read.*Permission denied") as error:
        kr.search.state.read_json(path, "the search's settings")
    assert "corrupt" not in str(error.value)


# --- Bad input: the fuzz's silent accepts and unclear errors ------------------------------


def test_search_refuses_an_image_size_for_a_named_dataset(tmp_path, data_dir, capsys):
    out = tmp_path / "s"
    argv = ["search", "--image-size", "8", "--data-dir", str(data_dir), "--out", str(out)]
    assert main(argv) == 2
    assert "`image_size` is for folders of images, not for 'mnist'" in capsys.readouterr().err
    assert not out.exists()


def test_build_takes_the_models_name_as_a_spec_field():
    assert kr.build("resnet20", name="mynet").name == "mynet"


def test_gated_shortcut_called_on_one_tensor_says_what_it_needs():
    with pytest.raises(ValueError, match=r"GatedShortcut is called on \[x, residual\].*one tensor"):
        kr.GatedShortcut()(keras.Input((8, 8, 8)))


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"y_train": [-1, 1, 2]}, "y_train must be whole class numbers from 0 up; got -1"),
        (
            {"y_test": [0, 5, 1]},
            r"y_test \(classes from y_train\) must be whole class numbers in 0..2; got 5",
        ),  # noqa: E501
    ],
)
def test_label_errors_of_an_npz_name_the_file_and_the_range(tmp_path, arrays, message):
    x = np.zeros((3, 8, 8), "uint8")
    path = tmp_path / "mine.npz"
    np.savez(
        path, **{"x_train": x, "y_train": [0, 1, 2], "x_test": x, "y_test": [0, 1, 2], **arrays}
    )
    with pytest.raises(kr.DataError, match=message) as error:
        kr.load_dataset(path)
    assert str(path) in str(error.value)


def test_a_trial_process_whose_search_died_exits_without_a_traceback():
    probe = (
        "import multiprocessing\n"
        "from keras_residual.search.isolation import _PipeWriter\n"
        "ours, theirs = multiprocessing.Pipe()\n"
        "ours.close()\n"
        "_PipeWriter(theirs, False).write('epoch 1/3')\n"
        "print('not reached')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=_quiet_env()
    )
    assert (result.returncode, result.stdout) == (1, "")
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr


def test_evaluate_of_a_missing_file_answers_before_tensorflow_loads(tmp_path):
    probe = (
        "import sys, contextlib, io\n"
        "from keras_residual_cli import main\n"
        "with contextlib.redirect_stderr(io.StringIO()) as err:\n"
        "    code = main(['evaluate', sys.argv[1]])\n"
        "print(code, 'tensorflow' in sys.modules, err.getvalue().strip())\n"
    )
    missing = tmp_path / "missing.keras"
    result = subprocess.run(
        [sys.executable, "-c", probe, str(missing)], capture_output=True, text=True
    )
    assert (
        result.stdout.strip() == f"2 False keras-residual: error: `model` {missing}: no such file."
    )


# --- kill -9 at any moment ------------------------------------------------------------------


def _quiet_env(**extra):
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **extra}


TRAIN_PROBE = """
import os, signal, sys
sys.path.insert(0, sys.argv[3])
import keras
import keras_residual as kr
from keras_residual import _files
from test_reliability import RECIPE, _model, _tiny_data

where, count = sys.argv[2].split(":")
calls = {"replace": 0, "save": 0}

def kill_on(name, real):
    def wrapped(*args, **kwargs):
        calls[name] += 1
        if where == name and calls[name] == int(count):
            if name == "save":  # the kill comes mid-write: half the bytes are on disk
                real(*args, **kwargs)
                path = args[1]
                os.truncate(path, os.path.getsize(path) // 2)
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    return wrapped

_files.os.replace = kill_on("replace", os.replace)
keras.Model.save = kill_on("save", keras.Model.save)
resume = os.path.exists(os.path.join(sys.argv[1], "run.json"))
kr.train(_model(), _tiny_data(), epochs=6, recipe=RECIPE, out_dir=sys.argv[1], resume=resume,
         verbose=0)
"""


def _run_train(out, kill_at):
    command = [sys.executable, "-c", TRAIN_PROBE, str(out), kill_at, str(Path(__file__).parent)]
    return subprocess.run(command, env=_quiet_env(), capture_output=True, text=True, timeout=300)


def _check_train_invariants(out: Path, finished: bool) -> None:
    epochs = _log_epochs(out) if (out / "log.csv").exists() else []
    assert epochs == list(range(len(epochs)))  # each epoch once, in order, none skipped
    state = out / "backup" / "state.json"
    committed = json.loads(state.read_text())["epoch"] if state.exists() else 0
    assert len(epochs) in (committed, committed + 1)  # at most the epoch being committed
    for name in ("best_model.keras", "last_model.keras"):
        if (out / name).exists():
            keras.saving.load_model(out / name, safe_mode=True, compile=False)
    if finished:
        assert epochs == list(range(6)) and committed == 6


@pytest.mark.slow
def test_train_killed_at_random_points_and_inside_checkpoint_writes_loses_nothing(tmp_path):
    """Kills a 6-epoch run twice: right before a file's rename (best, last, log, weights or
    the commit, drawn at random) and halfway through writing a model file; each resume
    goes on from the last committed epoch until the run finishes."""
    out, rng = tmp_path / "o", random.Random()  # other points each run; failures name theirs
    kills = [f"replace:{rng.randint(3, 12)}", "save:2"]  # 2 renames claim the folder
    for kill_at in kills:
        result = _run_train(out, kill_at)
        assert result.returncode == -signal.SIGKILL, (kill_at, result.stderr[-2000:])
        _check_train_invariants(out, finished=False)
    result = _run_train(out, "none:0")
    assert result.returncode == 0, result.stderr[-2000:]
    _check_train_invariants(out, finished=True)


CLI = "import sys; from keras_residual_cli import main; sys.exit(main())"


def _search_cli(out, data_dir, *extra):
    argv = ["search", "--data-dir", str(data_dir), "--out", str(out), "--max-trials", "2"]
    argv += ["--width", "4,6", "--blocks-per-stage", "1", "--final-epochs", "2"]
    argv += ["--max-final-epochs", "2", "--ensemble", "2", "--time-budget", "20m", *extra]
    command = [sys.executable, "-c", CLI, *argv]  # as the `keras-residual` script runs
    return subprocess.Popen(
        command, env=_quiet_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _trial_records(out: Path) -> dict:
    """Each finished trial's id, hyperparameters and score, as its own file holds them."""
    records = {}
    for path in sorted(out.glob("tuner/trial_*/trial.json")):
        trial = json.loads(path.read_text())
        if trial["status"] == "COMPLETED":
            records[trial["trial_id"]] = (trial["hyperparameters"]["values"], trial["score"])
    return records


@pytest.mark.slow
def test_search_killed_in_a_trial_and_in_the_final_retraining_loses_nothing(tmp_path, data_dir):
    """Kills a search in its second trial, in the first retrained copy of its best and in
    the second: no trial is lost or repeated, and the copy finished before the last kill is
    the one the final average holds."""
    out, rng = tmp_path / "s", random.Random()
    first = _search_cli(out, data_dir)
    deadline = time.monotonic() + 240
    while not _trial_records(out) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(rng.uniform(0, 2))  # somewhere in the second trial, or at its start
    first.send_signal(signal.SIGKILL)
    first.wait()
    finished = _trial_records(out)
    assert finished
    copies = out / "copies" / "copies.json"
    for started_line in ("Retraining trial", "Retraining it again"):  # copy 0, then copy 1
        resumed = _search_cli(out, data_dir, "--resume")
        for line in resumed.stdout:  # kill once this copy's retraining has begun
            if line.startswith(started_line):
                # copy 1 is killed within the first 60% of the time copy 0 took
                took = json.loads(copies.read_text())["seconds"][0] if copies.exists() else 5
                time.sleep(rng.uniform(0.1, 0.6) * took)
                break
        resumed.send_signal(signal.SIGKILL)
        assert resumed.wait() == -signal.SIGKILL  # killed in the retraining, not finished
    records = _trial_records(out)
    assert {k: records[k] for k in finished} == finished  # none lost or changed
    assert len(records) == 2
    kept = json.loads(copies.read_text())
    assert len(kept["seconds"]) == 1 and kept["epochs"] == 2
    copy = keras.saving.load_model(out / "copies" / "copy_0.keras", compile=False)
    last = _search_cli(out, data_dir, "--resume")
    output, errors = last.communicate(timeout=300)
    assert last.returncode == 0, errors[-2000:]
    assert f"Going on from the 1 retrained copy of trial {kept['trial_id']}'s" in output
    assert _trial_records(out) == records  # the retraining repeats no trial
    results = json.loads((out / "results.json").read_text())
    assert sorted(t["trial_id"] for t in results["trials"]) == sorted(records)
    assert results["best"]["trial_id"] == kept["trial_id"]
    assert results["best"]["ensemble_size"] == 2 and not (out / "copies").exists()
    saved = keras.saving.load_model(out / "best_model.keras", compile=False)
    for kept_weight, saved_weight in zip(
        copy.weights, saved.get_layer("member_0").weights, strict=True
    ):
        np.testing.assert_array_equal(kept_weight.numpy(), saved_weight.numpy())
