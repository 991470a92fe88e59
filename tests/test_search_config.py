"""One `SearchConfig` drives the command line and Python: the same defaults, validated once,
recorded in the run's folder and read back by `--resume`."""

import json

import pytest

import keras_residual as kr
from keras_residual.search import SearchConfig
from keras_residual_cli import main


@pytest.fixture
def captured(monkeypatch):
    """The config and folder the command line hands to `run_search` (which does not run)."""
    calls = []

    def fake_run_search(config, out, **options):
        calls.append((config, out, options))
        return {}

    monkeypatch.setattr(kr.search, "run_search", fake_run_search)
    return calls


def test_the_command_line_runs_the_python_default_config(captured, tmp_path, data_dir):
    out = str(tmp_path / "s")
    assert main(["search", "--dtype", "float32", "--data-dir", str(data_dir), "--out", out]) == 0
    ((config, folder, _),) = captured
    expected = SearchConfig.for_dataset("mnist", dtype="float32", data_dir=str(data_dir))
    assert (config, folder) == (expected, out)


def test_flags_and_a_space_file_become_config_fields_and_dimensions(captured, tmp_path):
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"preact": True}))
    argv = ["search", "--dataset", "cifar10", "--dtype", "float32", "--out", str(tmp_path / "s")]
    argv += ["--time-budget", "1h", "--width", "32,64", "--space", str(space), "--seed", "3"]
    assert main(argv) == 0
    config = captured[0][0]
    assert config == SearchConfig.for_dataset(
        "cifar10", time_budget="1h", seed=3, dtype="float32",
        space={"preact": True, "width": [32, 64]},
    )  # fmt: skip
    assert config.final_epochs == "auto" and config.min_final_epochs == 5  # CIFAR-10's


def test_resume_alone_continues_the_recorded_config(captured, tmp_path):
    out = tmp_path / "s"
    out.mkdir()
    recorded = SearchConfig.for_dataset("cifar10", time_budget="5m", space={"width": 32})
    (out / "search.json").write_text(json.dumps({"search_config": recorded.to_dict()}))
    assert main(["search", "--out", str(out), "--resume", "--dtype", "float32"]) == 0
    config, _, options = captured[0]
    assert config == recorded.replace(dtype="float32") and options["resume"] is True
    assert options["isolate_trials"] is True


def test_in_process_trains_the_trials_in_the_search_process(captured, tmp_path):
    assert main(["search", "--dtype", "float32", "--out", str(tmp_path / "s"), "--in-process"]) == 0
    assert captured[0][2]["isolate_trials"] is False


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tuner": "grid"}, "`tuner` must be one of"),
        ({"final_epochs": "auto", "time_budget": None}, "give a `time_budget` too"),
        ({"trial_share": 1.0}, "`trial_share` must lie in"),
        ({"data_fraction": 0}, "`data_fraction` must lie in"),
        ({"time_budget": "soon"}, "`time_budget` must look like"),
        ({"space": [8, 16]}, "`space` must be a mapping"),
        ({"trial_seconds": "auto", "time_budget": None}, "`trial_seconds='auto'`"),
        ({"trial_seconds": "a while"}, "`trial_seconds` must look like"),
        ({"trial_seconds": 0}, "`trial_seconds` must be positive"),
        ({"patience": 0}, "`patience` must be a positive integer"),
        ({"warm_start": "yes"}, "`warm_start` must be True or False"),
    ],
)
def test_a_bad_config_is_refused_naming_the_field(changes, message):
    with pytest.raises(ValueError, match=message):
        SearchConfig.for_dataset("mnist").replace(**changes)


def test_trials_of_an_image_search_share_the_trials_budget_at_equal_time(captured, tmp_path):
    # CIFAR-10 and a folder of images: the trials' half of the budget over TRIALS_PLANNED.
    planned = kr.search.config.TRIALS_PLANNED
    cifar = SearchConfig.for_dataset("cifar10", time_budget="1h")
    assert cifar.trial_seconds == "auto" and cifar.seconds_per_trial == 1800 / planned
    photos = SearchConfig.for_dataset("photos/", time_budget="10m", trial_share=0.3)
    assert photos.seconds_per_trial == 180 / planned
    # Given in seconds; none for MNIST's few-minute job, "none" and Hyperband (its rungs).
    assert cifar.replace(trial_seconds="40s").seconds_per_trial == 40
    assert SearchConfig.for_dataset("mnist").seconds_per_trial is None
    assert cifar.replace(trial_seconds="None").trial_seconds is None
    assert cifar.replace(tuner="hyperband").seconds_per_trial is None
    argv = ["search", "--dataset", "cifar10", "--trial-seconds", "90s", "--out", str(tmp_path)]
    assert main(argv) == 0 and captured[0][0].seconds_per_trial == 90


def test_patience_is_a_count_of_trials_or_none_from_the_command_line(captured, tmp_path):
    assert SearchConfig.for_dataset("mnist").patience is None  # trials take their share
    assert SearchConfig.for_dataset("cifar10").patience == 2  # the rest to the retraining
    argv = ["search", "--dataset", "cifar10", "--patience", "4", "--out", str(tmp_path / "a")]
    assert main(argv) == 0 and captured[0][0].patience == 4
    argv = ["search", "--dataset", "cifar10", "--patience", "none", "--out", str(tmp_path / "b")]
    assert main(argv) == 0 and captured[1][0].patience is None


def test_the_retraining_starts_warm_unless_the_command_line_says_otherwise(captured, tmp_path):
    assert SearchConfig.for_dataset("cifar10").warm_start is True
    argv = ["search", "--dataset", "cifar10", "--no-warm-start", "--out", str(tmp_path / "a")]
    assert main(argv) == 0 and captured[0][0].warm_start is False
    argv = ["search", "--dataset", "cifar10", "--out", str(tmp_path / "b")]
    assert main(argv) == 0 and captured[1][0].warm_start is True


def test_a_config_round_trips_through_json():
    config = SearchConfig.for_dataset("photos/", image_size=(48, 64), space={"se": True})
    again = SearchConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and again.image_size == (48, 64)
    with pytest.raises(ValueError, match="no field 'budget'"):
        SearchConfig.from_dict({**config.to_dict(), "budget": 5})


def test_run_search_takes_a_config_and_nothing_beside_it(tmp_path):
    with pytest.raises(ValueError, match=r"takes no other settings \(width\)"):
        kr.search.run_search(SearchConfig(), tmp_path / "s", width=8)
