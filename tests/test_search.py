import csv
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import keras
import keras_tuner
import numpy as np
import pytest
from conftest import FINISHED_SEARCH, learnable_images

import keras_residual as kr
from keras_residual.flops import count_flops
from keras_residual.search import (
    ResidualHyperModel,
    SearchConfig,
    resolve_space,
    retrain,
    run_search,
)
from keras_residual.search.budget import (
    AUTO_MARGIN,
    PROBE_FILE,
    PROBE_GAIN,
    CostModel,
    Retraining,
    TimeLimit,
    Timing,
    load_probe,
    save_probe,
)
from keras_residual.search.incumbent import Incumbent, noise_band
from keras_residual.search.isolation import TrialProcesses
from keras_residual.search.run import (
    SearchFailed,
    _first_trial,
    _plan_retraining,
    _retrain_members,
    _retraining,
    within_noise,
)
from keras_residual.search.space import PREFERRED_EPOCHS
from keras_residual.search.trials import _drawn, equal_time_plan
from keras_residual.search.tuner import RandomSearch, TrialsStopped

TINY = {"width": [4, 6, 8, 10], "blocks_per_stage": 1}


def read_csv(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"width": []}, "Choices for `width` are empty"),
        ({"blocks_per_stage": {"min": 3, "max": 1}}, "empty or inverted"),
        ({"weight_decay": {"min": 0, "max": 1e-3, "sampling": "log"}}, "needs min > 0"),
        ({"block": ["basic", "huge"]}, "`block`"),
        ({"width": [8, -1]}, "`width`"),
        ({"activation": ["relu", "tanh"]}, "`activation`"),
        ({"depth_of_field": 3}, "Unknown search dimensions"),
        ({"blocks_per_stage": ["1,x,1"]}, "counts a stage such as '1,0,1'"),
        ({"blocks_per_stage": ["1,-1,1"]}, "`blocks_per_stage`"),
        ({"width": [8, 16.0]}, r"Choices for `width` must all be of one type"),
    ],
)
def test_bad_search_spaces_are_rejected(overrides, message):
    with pytest.raises(ValueError, match=message):
        resolve_space("mnist", **overrides)


def test_a_count_a_stage_and_one_count_mix_as_strings_and_build_alike():
    """`["1,0,1", 2]` (a --space file's choices): keras-tuner takes one type, and "2" is 2
    in every stage, as 2 is."""
    space = resolve_space("cifar10", blocks_per_stage=["1,0,1", 2], width=8)
    assert space["blocks_per_stage"] == ["1,0,1", "2"]
    hypermodel = ResidualHyperModel((32, 32, 3), 10, "cifar10", space)
    hp = keras_tuner.HyperParameters()
    hypermodel.declare(hp)
    depths = []
    for blocks in ("1,0,1", "2"):
        hp.values["blocks_per_stage"] = blocks
        depths.append(hypermodel.spec(hp).depths)
    assert depths == [(1, 0, 1), (2, 2, 2)]
    with pytest.raises(ValueError, match=r"`kernel_size` must all be of one type.*'3,3' for two"):
        resolve_space("series", kernel_size=["8,5,3", 3])  # "3" would be one convolution


@pytest.mark.parametrize(
    ("space", "shape", "presets"),
    [
        ("mnist", (28, 28, 1), ["fast_mnist"]),
        ("cifar10", (32, 32, 3), ["fast_cifar_m", "fast_cifar_s"]),
    ],
)
def test_an_image_space_holds_its_presets_as_points_a_search_tries_first(
    space, shape, presets, tmp_path
):
    hypermodel = ResidualHyperModel(shape, 10, space)
    baselines = hypermodel.baselines()
    assert [name for name, _ in baselines] == presets  # in order of preference
    for name, values in baselines:
        hp = keras_tuner.HyperParameters()
        hypermodel.declare(hp)
        hp.values.update(values)
        spec, preset = hypermodel.spec(hp), kr.get_spec(name)
        # the same network (the whitening stem takes no stem filters), by the preset's name
        assert spec.replace(stem_filters=preset.stem_filters) == preset
        assert hypermodel.recipe_for(hp) == kr.get_recipe(kr.preset_info(name).recipe)
        assert hypermodel.preset_name(hp.values) == name
    values = baselines[0][1]
    tuner = RandomSearch(hypermodel, objective="val_accuracy", directory=tmp_path, max_trials=3,
                         first_values=values, isolate_trials=False)  # fmt: skip
    assert hypermodel.spec(tuner.oracle.create_trial("t0").hyperparameters).name == presets[0]
    assert hypermodel.spec(tuner.oracle.create_trial("t1").hyperparameters).name != presets[0]
    assert ResidualHyperModel(shape, 10, space, width=[8, 16]).baselines() == []


def test_width_is_one_number_or_filters_a_stage():
    hypermodel = ResidualHyperModel((32, 32, 3), 10, "cifar10", blocks_per_stage="1,0,1")
    assert hypermodel.space["width"] == ["32", "64", "96", "128", "64,256,256"]
    hp = keras_tuner.HyperParameters()
    hypermodel.declare(hp)
    specs = {}
    for width in ("64", "64,256,256"):
        hp.values["width"], hp.values["se_ratio"] = width, 0.0625
        specs[width] = hypermodel.spec(hp)
    assert specs["64"].filters == (64, 128, 256)
    assert specs["64,256,256"].filters == (64, 256, 256)
    assert specs["64,256,256"].name == "resnet6_w64-256-256_pool"  # with SE: not the preset
    assert hypermodel.smallest().values["width"] == "32"
    mixed = ResidualHyperModel((32, 32, 3), 10, "cifar10", width=[32, "64,256,256"])
    assert mixed.space["width"] == ["32", "64,256,256"]  # 32 and "32" are alike
    with pytest.raises(ValueError, match="gives 2 stages' filters, but `stages` is 3"):
        ResidualHyperModel((32, 32, 3), 10, "cifar10", width="64,128").spec(
            keras_tuner.HyperParameters()
        )
    with pytest.raises(ValueError, match="`width` must be a positive integer or filters a stage"):
        ResidualHyperModel((32, 32, 3), 10, "cifar10", width="64,wide")


def test_blocks_per_stage_is_one_count_or_one_a_stage():
    hypermodel = ResidualHyperModel((32, 32, 3), 10, "cifar10", width=32, se_ratio=0.0)
    specs = {}
    for blocks in ("1,0,1", "2,2,2"):
        hp = keras_tuner.HyperParameters()
        hypermodel.declare(hp)
        hp.values["blocks_per_stage"] = blocks
        specs[blocks] = hypermodel.spec(hp)
    assert specs["1,0,1"].depths == (1, 0, 1) and specs["1,0,1"].name == "resnet6_w32_pool"
    assert specs["2,2,2"].depths == (2, 2, 2) and specs["2,2,2"].name == "resnet14_w32_pool"
    both = ResidualHyperModel((32, 32, 3), 10, "cifar10", downsample=["pool", "stride"])
    assert both.smallest("pool").values["blocks_per_stage"] == "1,0,1"
    assert both.smallest("stride").values["blocks_per_stage"] == "1,1,1"  # a block a stride
    with pytest.raises(ValueError, match="gives 2 stages' counts, but `stages` is 3"):
        ResidualHyperModel((32, 32, 3), 10, "cifar10", blocks_per_stage="1,1").spec(
            keras_tuner.HyperParameters()
        )


def test_image_searches_try_smaller_input_sizes_down_to_32_pixels():
    assert kr.search.input_scales((48, 48, 1)) == [1.0, 0.75, 0.6667]
    assert kr.search.input_scales((96, 80, 3)) == [1.0, 0.75, 0.6667, 0.5]  # 80 -> 40 px, not 27
    assert kr.search.input_scales((32, 32, 3)) == kr.search.input_scales((None, None, 3)) == 1.0
    folder = ResidualHyperModel((48, 48, 1), 5, width=32, se_ratio=0.0, blocks_per_stage="1,0,1")
    assert folder.space["input_scale"] == [1.0, 0.75, 0.6667]  # "auto", for these images
    assert ResidualHyperModel((32, 32, 3), 10).space["input_scale"] == 1.0  # CIFAR-10 as it was
    specs = {}
    for scale in folder.space["input_scale"]:
        hp = keras_tuner.HyperParameters()
        folder.declare(hp)
        hp.values["input_scale"] = scale
        specs[scale] = folder.spec(hp)
    assert [spec.name for spec in specs.values()] == [
        "resnet6_w32_pool", "resnet6_w32_pool_at36", "resnet6_w32_pool_at32",
    ]  # fmt: skip
    assert specs[0.6667].input_shape == (48, 48, 1) and specs[0.6667].scaled_shape == (32, 32, 1)
    model = kr.build_network(specs[0.6667])
    assert model.input_shape == (None, 48, 48, 1)
    assert model.get_layer("stage3_pool").output.shape[1:3] == (3, 3)  # CIFAR-10's layout
    assert folder.smallest().values["input_scale"] == 0.6667  # the cheapest
    images = ResidualHyperModel((48, 48, 1), 5)
    (name, values), *_ = images.baselines()
    assert name == "fast_cifar_m" and values["input_scale"] == 0.6667  # at 32 pixels
    hp = keras_tuner.HyperParameters()
    images.declare(hp)
    hp.values.update(values)
    assert images.spec(hp).name == "fast_cifar_m_at32"
    hp.values["input_scale"] = 1.0
    assert images.spec(hp).name == "fast_cifar_m"  # the preset at the images' own size
    narrowed = ResidualHyperModel((48, 48, 1), 5, input_scale=[1, 0.75])  # --input-scale 1,0.75
    assert narrowed.space["input_scale"] == [1.0, 0.75]
    with pytest.raises(ValueError, match="`input_scale` must be a finite number > 0"):
        ResidualHyperModel((48, 48, 1), 5, input_scale=[1.0, -0.5])


def test_the_results_table_shows_which_rows_are_presets():
    row = {"status": "completed", "reason": "", "width": 32, "params": 1, "flops": 1.0}
    row["trial_seconds"] = 1.0
    rows = [
        {**row, "trial_id": "0", "val_accuracy": 0.9, "spec": {"name": "fast_mnist"}},
        {**row, "trial_id": "1", "val_accuracy": 0.95, "spec": {"name": "resnet8_w16_pool"}},
    ]
    rows.append({**row, "trial_id": "2", "val_accuracy": 0.8, "spec": {"name": "fast_mnist_at32"}})
    header, _, best, baseline, scaled = kr.search.format_table(rows).splitlines()
    assert scaled.split()[:3] == ["2", "completed", "fast_mnist_at32"]
    assert header.split()[:3] == ["trial", "status", "preset"]
    assert baseline.split()[:3] == ["0", "completed", "fast_mnist"]
    assert best.split()[:3] == ["1", "completed", "-"]
    assert "preset" not in kr.search.format_table(rows[1:2])


def test_a_budget_too_small_for_the_first_trial_is_refused_before_any_folder(data_dir, tmp_path):
    out = tmp_path / "runs" / "search"
    with pytest.raises(
        ValueError,
        match=r"`time_budget` 1s is too small .*: to train resnet8_w8_pool for 1 epoch as a "
        r"trial and retrain it on all 600 images for 3 epochs takes at least about \d+ s here "
        r".* --time-budget \d+m or more",
    ):
        config = {"time_budget": "1s", "data_fraction": 1.0}  # steps enough to time
        run_search(SearchConfig.for_dataset("mnist", data_dir=data_dir, **config), out)
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_a_preset_too_slow_for_the_budget_is_not_tried_first(
    data_dir, tmp_path, monkeypatch, capsys
):
    def probe(hypermodel, hp, *args):  # seconds an image: the preset's far too many
        return 1.0 if hypermodel.spec(hp).name == "fast_mnist" else 1e-6

    monkeypatch.setattr("keras_residual.search.run.probe", probe)
    config = {"time_budget": "5m", "data_fraction": 1.0, "max_trials": 1, "data_dir": data_dir}
    config["max_final_epochs"] = 3  # not as many as the budget leaves time for
    config = SearchConfig.for_dataset("mnist", **config)
    result = run_search(config, tmp_path / "s", verbose=0, isolate_trials=False)
    printed = capsys.readouterr().out
    assert re.search(r"The fast_mnist preset is not tried: to train fast_mnist for 1 epoch as "
                     r"a trial .* takes at least about \d+ s here .*, more than the budget\.",
                     printed)  # fmt: skip
    # In its place the first trial is the smallest network, timed to fit: one drawn at
    # random would start unchecked, before any network is timed.
    assert "The first trial is the space's smallest network (resnet8_w8_pool)" in printed
    assert [row["spec"]["name"] for row in result["trials"]] == ["resnet8_w8_pool"]


def test_the_presets_of_a_space_are_listed_costliest_first():
    """The search times the last first: where the cheapest does not fit, none can."""
    for shape, classes in [((32, 32, 3), 10), ((28, 28, 1), 10)]:
        hypermodel = ResidualHyperModel(shape, classes)
        flops = []
        for _, values in hypermodel.baselines():
            hp = hypermodel.smallest()
            hp.values.update(values)
            flops.append(kr.count_flops(hypermodel.build(hp)))
        assert flops == sorted(flops, reverse=True)
    assert len(ResidualHyperModel((32, 32, 3), 10).baselines()) == 2


def _ten_minutes_of_cifar10(data_dir):
    """A 10-minute CIFAR-10 search's hypermodel, retraining and `_first_trial`."""
    config = SearchConfig.for_dataset("cifar10", data_dir=data_dir, time_budget="10m")
    data = kr.load_dataset("cifar10", data_dir, seed=0)
    hypermodel = ResidualHyperModel(data.input_shape, data.num_classes, "cifar10")
    retraining = _retraining(hypermodel, data, config.min_final_epochs)
    return hypermodel, retraining, _first_trial(config, hypermodel, data, retraining)


@pytest.mark.parametrize(
    ("medium_per_image", "first"),
    [(1e-4, "fast_cifar_m"), (0.05, "fast_cifar_s"), (1.0, "fast_cifar_s")],
)
def test_a_search_starts_from_the_largest_preset_its_budget_retrains_for_ten_epochs(
    data_dir, monkeypatch, medium_per_image, first
):
    def probe(hypermodel, hp, *args):  # seconds an image, by network
        return medium_per_image if hypermodel.spec(hp).name == "fast_cifar_m" else 1e-4

    monkeypatch.setattr("keras_residual.search.run.probe", probe)
    hypermodel, retraining, ((what, values), untried) = _ten_minutes_of_cifar10(data_dir)
    assert values == dict(hypermodel.baselines())[first]
    assert what == f"the {first} preset, as a point of the space"
    # At 0.05 s an image fast_cifar_m would retrain on the 600 images for the 5 least epochs
    # in the retraining's share of the 10 minutes, but not for the 10 the speed family's
    # recipe is tuned for.
    assert retraining.final_epochs == 5 and PREFERRED_EPOCHS == 10
    if first == "fast_cifar_s":
        assert re.match(r"The fast_cifar_m preset is not tried: to train fast_cifar_m for 1 "
                        r"epoch as a trial and retrain it on all \d+ images for 10 epochs takes "
                        r"at least about \d+ s here", untried)  # fmt: skip
    else:
        assert untried == ""


def test_a_search_no_preset_fits_starts_from_the_smallest_network_and_holds_no_pick(
    data_dir, tmp_path, monkeypatch
):
    timed = []

    def probe(hypermodel, hp, *args):  # seconds an image: every preset far too many
        timed.append(hypermodel.spec(hp).name)
        return 1.0 if hypermodel.preset_name(hp.values) else 1e-6

    monkeypatch.setattr("keras_residual.search.run.probe", probe)
    hypermodel, _, ((what, values), untried) = _ten_minutes_of_cifar10(data_dir)
    assert values == hypermodel.smallest().values
    assert what == "the space's smallest network (resnet6_w32_pool), the one known to fit"
    # The cheapest preset is timed first; as it does not fit, the costlier is not timed.
    assert timed == ["fast_cifar_s", "resnet6_w32_pool"]
    assert re.fullmatch(r"The fast_cifar_s preset is not tried: .*, more than the budget\. "
                        r"Nor is fast_cifar_m, costlier\.", untried)  # fmt: skip
    # Not a preset: the pick is not held to it, and no trial stops halfway against it.
    tuner = RandomSearch(hypermodel, objective="val_accuracy", directory=tmp_path, max_trials=2,
                         first_values=values, isolate_trials=False, retraining_budget=60.0,
                         trial_seconds=10.0)  # fmt: skip
    first = tuner.oracle.create_trial("tuner0")
    assert first.hyperparameters.values == values
    tuner.oracle.update_trial(first.trial_id, {"val_accuracy": 0.5, "flops": 1e6}, step=1)
    first.status = "COMPLETED"
    tuner.oracle.end_trial(first)
    assert tuner.incumbent() is None


def test_learning_rate_is_conditional_on_the_optimizer():
    hypermodel = ResidualHyperModel(
        (28, 28, 1), 10, optimizer=["nesterov", "adamw"], learning_rate=None
    )
    hp = keras_tuner.HyperParameters()
    hypermodel.declare(hp)
    assert {"sgd_learning_rate", "adaptive_learning_rate"} <= {h.name for h in hp.space}
    assert hp.is_active("sgd_learning_rate") != hp.is_active("adaptive_learning_rate")
    hp.values["optimizer"] = "adamw"
    assert hp.is_active("adaptive_learning_rate") and not hp.is_active("sgd_learning_rate")


@pytest.mark.parametrize(
    ("block", "kind", "preact"),
    [
        ("basic", kr.BasicBlock, False),
        ("basic", kr.BasicBlock, True),
        ("bottleneck", kr.BottleneckBlock, False),
    ],  # fmt: skip
)
def test_hypermodel_builds_the_chosen_depth_width_and_block(block, kind, preact):
    space = {"blocks_per_stage": 2, "width": 8, "stages": 2, "block": block, "se": True}
    space["preact"] = preact
    model = ResidualHyperModel((28, 28, 1), 10, space=space).build(keras_tuner.HyperParameters())
    blocks = [layer for layer in model.layers if isinstance(layer, kr.ResidualBlock)]
    assert len(blocks) == 4 and all(type(b) is kind and b.preact == preact for b in blocks)
    assert blocks[0].filters == 8 and blocks[0].se_ratio > 0


def test_search_records_trials_and_saves_the_best_model(data_dir, finished_search):
    out, printed, result = finished_search.out, finished_search.printed, finished_search.result
    assert FINISHED_SEARCH == {"max_trials": 3, "data_fraction": 0.5, **TINY}
    assert printed.count("[trial ") == 3 and "best so far=" in printed
    rows = read_csv(out / "results.csv")
    assert [r["trial_id"] for r in rows] == ["0", "1", "2"]
    assert all(r["status"] == "completed" for r in rows)
    train_size = len(kr.load_dataset("mnist", data_dir).y_train)
    for row in rows:
        assert (row["epochs"], int(row["train_examples"])) == ("1", round(train_size / 2))
        assert int(row["params"]) > 0 and int(row["flops"]) > 0
        assert 0 < float(row["fit_seconds"]) <= float(row["trial_seconds"])
        assert 0 <= float(row["val_accuracy"]) <= 1 and row["width"] in {"4", "6", "8", "10"}
    document = json.loads((out / "results.json").read_text())
    assert document["pareto_front"] and document["best"]["test_accuracy"] >= 0
    for row, csv_row in zip(document["trials"], rows, strict=True):  # every row is a spec
        spec = kr.spec_from_dict(row["spec"])
        assert spec == kr.spec_from_dict(json.loads(csv_row["spec"]))
        assert spec.stem_filters == row["width"] and spec.depths == (1, 1, 1)
        assert kr.build_network(spec).count_params() == row["params"]
    assert (out / "pareto.png").stat().st_size > 0 and (out / "progress.png").exists()
    best = keras.saving.load_model(out / "best_model.keras", safe_mode=True)
    assert best.count_params() == result["best"]["params"]
    assert max(float(r["val_accuracy"]) for r in rows) == pytest.approx(
        result["best"]["val_accuracy"]
    )


@pytest.mark.slow
def test_failed_trials_are_recorded_and_the_search_goes_on(data_dir, tmp_path, capfd):
    out = tmp_path / "diverging"
    # Every trial failed: said, after the results.
    with pytest.raises(SearchFailed, match="None of the 2 trials completed.*diverged"):
        run_search("mnist", out, max_trials=2, data_dir=data_dir, verbose=0,
                   learning_rate=1e12, **TINY)  # fmt: skip
    rows = read_csv(out / "results.csv")
    assert len(rows) == 2 and all(r["status"] == "failed" for r in rows)
    assert all("diverged" in r["reason"] for r in rows)
    printed = capfd.readouterr()
    for row in rows:  # a line per trial with its reason; the traceback stays in its record
        assert f"[trial {row['trial_id']}] failed ({row['reason']})" in printed.out
    assert "Traceback" not in printed.out + printed.err
    assert not (out / "best_model.keras").exists()


def test_cifar_space_trains_with_airbench_on_the_head_it_is_tuned_for():
    hp = keras_tuner.HyperParameters()
    hypermodel = ResidualHyperModel((32, 32, 3), 10)
    spec = hypermodel.spec(hp)
    head = kr.fast_cifar_spec("s")
    assert (spec.pooling, spec.logit_scale, spec.norm) == (head.pooling, head.logit_scale,
                                                           head.norm)  # fmt: skip
    plain = ResidualHyperModel((32, 32, 3), 10, recipe="fast_cifar").spec(hp)
    assert (plain.pooling, plain.logit_scale, plain.norm) == ("avg", 1.0, kr.Norm())
    momentum = ResidualHyperModel((32, 32, 3), 10, norm=kr.Norm(momentum=0.8)).spec(hp)
    assert momentum.norm.momentum == 0.8 and momentum.logit_scale == head.logit_scale


def test_activation_is_a_dimension_gelu_for_cifar_and_relu_for_mnist():
    def activations(model):
        return {layer.activation.__name__ for layer in model.layers if "_relu" in layer.name
                or "_gelu" in layer.name}  # fmt: skip

    cifar = ResidualHyperModel((32, 32, 3), 10, width=8, blocks_per_stage=1)
    assert cifar.spec(keras_tuner.HyperParameters()).activation == kr.fast_cifar_spec().activation
    assert activations(cifar.build(keras_tuner.HyperParameters())) == {"gelu"}
    mnist = ResidualHyperModel((28, 28, 1), 10, width=8, blocks_per_stage=1)
    assert activations(mnist.build(keras_tuner.HyperParameters())) == {"relu"}
    both = ResidualHyperModel((28, 28, 1), 10, activation=["relu", "gelu"])
    hp = keras_tuner.HyperParameters()
    both.declare(hp)
    hp.values["activation"] = "gelu"
    assert both.spec(hp).activation == "gelu"


def test_constraints_reject_networks_before_they_train():
    hypermodel = ResidualHyperModel((16, 16, 1), 3, width=[4, 16], blocks_per_stage=1,
                                    max_params=10_000)  # fmt: skip
    hp = keras_tuner.HyperParameters()
    hypermodel.declare(hp)
    hp.values["width"] = 16
    model = hypermodel.build(hp)
    assert model.count_params() > 10_000
    x, y = np.zeros((8, 16, 16, 1), "float32"), np.arange(8) % 3
    with pytest.raises(keras_tuner.errors.FailedTrialError, match="over max_params=10,000"):
        hypermodel.fit(hp, model, x, y, epochs=1, verbose=0)
    assert not model.compiled  # rejected before training
    hp.values["width"] = 4
    small = hypermodel.build(hp)
    assert hypermodel.fit(hp, small, x, y, epochs=1, verbose=0)["params"] <= 10_000
    rows = [{"trial_id": "0", "params": 5_000, "val_accuracy": 0.5, "status": "completed"}]
    lines = kr.search.pareto_figure(rows, max_params=10_000).axes[0].get_lines()
    assert [line.get_label() for line in lines][-1] == "max_params"


@pytest.mark.slow
def test_time_budget_stops_launching_trials(data_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "budget"
    no_probe = (None, "")  # 1 s is too few for the smallest network
    monkeypatch.setattr("keras_residual.search.run._first_trial", lambda *args: no_probe)
    run_search("mnist", out, max_trials=4, time_budget="1s", data_dir=data_dir, verbose=0,
               isolate_trials=False, **TINY)  # fmt: skip
    (row,) = read_csv(out / "results.csv")
    assert int(row["train_examples"]) == len(kr.load_dataset("mnist", data_dir).y_train)
    assert "time budget of 1 s spent" in capsys.readouterr().out


@pytest.mark.slow
def test_auto_final_epochs_retrain_in_the_time_the_trials_leave(data_dir, tmp_path, capsys):
    out, budget, began = tmp_path / "auto", 30.0, time.time()
    result = run_search("mnist", out, max_trials=50, time_budget=budget, final_epochs="auto",
                        trial_share=0.4, min_final_epochs=2, max_final_epochs=3,
                        warm_start=False, data_dir=data_dir, verbose=0, isolate_trials=False,
                        **TINY)  # fmt: skip
    printed = capsys.readouterr().out
    assert result["best"]["warm_start"] is False and "starts from the weights" not in printed
    rows = json.loads((out / "results.json").read_text())["trials"]
    # Every trial that trained started in the trials' share (a skipped one never trains,
    # so records no start; which networks a host skips depends on its speed).
    trained = [r for r in rows if r["status"] == "completed"]
    assert trained and all(r["started_at"] - began < 0.4 * budget for r in trained)
    assert all(r["status"] in ("completed", "skipped") for r in rows)  # none failed
    epochs = result["best"]["retrained_epochs"]
    assert isinstance(epochs, int) and 2 <= epochs <= 3
    assert f"for {epochs} epochs (as many as fit in the" in printed
    assert re.search(
        r"s left, at least 2, at most 3\): about \d+ s, then about \d+ s to test", printed
    )


@pytest.mark.parametrize(("trial_seconds", "held"), [(2.0, True), (None, False)])
def test_only_equal_time_trials_hold_the_pick_to_the_preset(tmp_path, trial_seconds, held):
    hypermodel = ResidualHyperModel((28, 28, 1), 10)
    [(name, values)] = hypermodel.baselines()
    tuner = RandomSearch(hypermodel, objective="val_accuracy", directory=tmp_path, max_trials=3,
                         first_values=values, isolate_trials=False, retraining_budget=60.0,
                         trial_seconds=trial_seconds)  # fmt: skip
    assert tuner.incumbent() is None  # no trial yet
    first = tuner.oracle.create_trial("tuner0")
    scores = {"val_accuracy": 0.9, "flops": 5e6, "halfway_val_accuracy": 0.7}
    tuner.oracle.update_trial(first.trial_id, scores, step=1)
    first.status = "COMPLETED"
    tuner.oracle.end_trial(first)
    # Equal epochs (`trial_seconds` None) favour the costlier network, not the cheaper one.
    expected = Incumbent(name, first.trial_id, 0.9, 5e6, halfway=0.7) if held else None
    assert tuner.incumbent() == expected


@pytest.mark.slow
def test_a_search_of_equal_time_trials_keeps_its_preset_unless_a_costlier_network_leads(
    data_dir, tmp_path, capsys
):
    out, space = tmp_path / "s", {"width": [8, 16, 32], "blocks_per_stage": [1, 2]}
    config = SearchConfig.for_dataset(
        "mnist", data_dir=data_dir, space=space, data_fraction=1.0, time_budget="2m",
        final_epochs="auto", trial_seconds="2s", min_final_epochs=1, max_final_epochs=2,
    )  # fmt: skip
    result = run_search(config, out, verbose=0, isolate_trials=False)
    printed = capsys.readouterr().out
    assert "The first trial is the fast_mnist preset, as a point of the space." in printed
    preset, *others = sorted(result["trials"], key=lambda row: row["trial_id"])
    assert preset["spec"]["name"] == "fast_mnist" and preset["status"] == "completed"
    # A network cheaper than the preset is skipped before it trains: in trials of equal
    # time its lead would not last. ResNet-8 and -14 at widths 8 and 16 are cheaper.
    cheaper = [row for row in others if row["spec"]["name"].endswith(("_w8_pool", "_w16_pool"))]
    assert len(cheaper) == 4 and all(row["status"] == "skipped" for row in cheaper)
    assert all("cheaper than the fast_mnist preset (trial" in row["reason"] for row in cheaper)
    # The costlier ResNet-14 at width 32 trains, and replaces the preset only where it
    # leads by more than the noise on the validation images. Each trains an even count of
    # epochs, its score halfway through recorded: behind the preset's there by more than
    # the noise, the costlier one stops.
    (costlier,) = [row for row in others if row not in cheaper]
    assert costlier["flops"] > preset["flops"]
    assert preset["epochs"] % 2 == 0 and preset["halfway_val_accuracy"] is not None
    validated = len(kr.load_dataset("mnist", data_dir, seed=0).y_val)
    halfway = costlier["halfway_val_accuracy"], preset["halfway_val_accuracy"]
    behind = halfway[1] - halfway[0] > noise_band(max(halfway), validated)
    assert costlier["status"] == ("stopped" if behind else "completed")
    band = noise_band(costlier["val_accuracy"], validated)
    leads = costlier["val_accuracy"] - preset["val_accuracy"] > band
    assert result["best"]["trial_id"] == (costlier if leads else preset)["trial_id"]
    if not leads and costlier["val_accuracy"] > preset["val_accuracy"]:
        assert "Retraining the fast_mnist preset the search started from" in printed


class _Kept:
    """`KeptCopies` in memory, without its files: copies of `epochs`, `models` kept."""

    def __init__(self, epochs, models=()):
        self.epochs, self.kept = epochs, list(models)
        self.seconds, self.trained = [0.0] * len(models), [epochs] * len(models)

    def models(self):
        return list(self.kept)

    def add(self, model, seconds, trained):
        self.kept.append(model)
        self.seconds.append(seconds)
        self.trained.append(trained)


def test_copies_of_the_best_train_while_the_time_left_holds_one_more(monkeypatch, capsys):
    """The first copy always trains; each next one (seed + 1, ...) only if the time left
    holds one more as long as the last took, with its margin and test. Copies kept by a
    killed search count and are not trained again; each new copy is kept."""
    seeds = []

    def retrain(hypermodel, hp, data, epochs, *, seed, verbose, recipe, callbacks, seconds,
                initial_weights):  # fmt: skip
        assert epochs == 2 and recipe is None and not callbacks  # the trials' own recipe
        assert seconds is None  # not paced: a copy trains its epochs
        seeds.append(seed)
        return seed

    monkeypatch.setattr("keras_residual.search.run.retrain", retrain)
    args, soon, kept = (None, None, None), time.monotonic() + 60, _Kept(2)
    assert _retrain_members(*args, kept, None, 7, 0, 3, None, 0.0) == [7, 8, 9]  # no budget
    assert kept.trained == [2, 2, 2]  # each copy its epochs
    assert _retrain_members(*args, _Kept(2), None, 7, 0, 4, soon, 1.0) == [7, 8, 9, 10]
    assert "with seed 8 for an average of copies (2 of at most 4)" in capsys.readouterr().out
    assert _retrain_members(*args, _Kept(2), None, 7, 0, 4, soon, 61.0) == [7]  # no test fits
    assert _retrain_members(*args, _Kept(2), None, 7, 0, 4, time.monotonic() - 1, 0.0) == [7]
    seeds.clear()
    kept = _Kept(2, ["kept 7", "kept 8"])
    assert _retrain_members(*args, kept, None, 7, 0, 3, None, 0.0) == ["kept 7", "kept 8", 9]
    assert seeds == [9] and kept.kept == ["kept 7", "kept 8", 9] and len(kept.seconds) == 3


def test_the_first_copy_starts_from_its_trials_weights_and_the_others_afresh(monkeypatch, capsys):
    """Given the trial's checkpoint, the first copy retrains from its weights (its trial's
    epochs are not spent again); the copies after it, and a copy after those a killed
    search kept, start afresh: each a network of its own seed to average."""
    starts = []

    def retrain(hypermodel, hp, data, epochs, *, seed, verbose, recipe, callbacks, seconds,
                initial_weights):  # fmt: skip
        starts.append(initial_weights)
        return seed

    monkeypatch.setattr("keras_residual.search.run.retrain", retrain)
    args, trial = (None, None, None), "tuner/trial_00/checkpoint.weights.h5"
    assert _retrain_members(*args, _Kept(2), None, 7, 0, 3, None, 0.0, False, trial) == [7, 8, 9]
    assert starts == [trial, None, None]
    assert "starts from the weights its trial trained" in capsys.readouterr().out
    starts.clear()
    kept = _Kept(2, ["kept 7"])
    assert _retrain_members(*args, kept, None, 7, 0, 2, None, 0.0, False, trial) == ["kept 7", 8]
    assert starts == [None]
    assert _retrain_members(*args, _Kept(2), None, 7, 0, 1, None, 0.0) == [7]  # no start given
    assert starts == [None, None]


def test_a_paced_retraining_trains_until_its_test_is_all_the_time_left(monkeypatch, capsys):
    """Paced, the first copy gets the time to the deadline less its test (`retrain`'s
    `seconds`), whatever its epochs' forecast, and records the epochs it trained: the
    steps its optimizer took over an epoch's, the last one partial."""
    given = []

    def retrain(hypermodel, hp, data, epochs, *, seed, verbose, recipe, callbacks, seconds,
                initial_weights):  # fmt: skip
        given.append((epochs, seconds))
        optimizer = type("Optimizer", (), {"iterations": 17})()  # 4.25 epochs of 4 steps
        history = type("History", (), {"params": {"steps": 4}})()
        return type("Model", (), {"optimizer": optimizer, "history": history})()

    monkeypatch.setattr("keras_residual.search.run.retrain", retrain)
    kept, deadline = _Kept(3), time.monotonic() + 100
    members = _retrain_members(None, None, None, kept, None, 0, 0, 1, deadline, 10.0, True)
    [(epochs, seconds)] = given
    assert len(members) == 1 and epochs == 3 and 89 < seconds <= 90  # 100 s less a 10 s test
    assert kept.trained == [4.25] and "Trained 4.25 epochs in 0 s (paced to 90 s)." in (
        capsys.readouterr().out
    )


@pytest.mark.slow
def test_a_budgeted_search_paces_its_retraining_to_end_within_the_budget(
    data_dir, tmp_path, capsys
):
    """Without a ceiling on its epochs the retraining is paced to the time the trials
    leave: the search ends within its budget (and a little for saving and testing the
    model), having trained as many epochs as the time held, the last one partial."""
    out, budget, began = tmp_path / "paced", 30.0, time.monotonic()
    result = run_search("mnist", out, max_trials=3, time_budget=budget, final_epochs="auto",
                        trial_share=0.3, min_final_epochs=1, data_dir=data_dir, verbose=0,
                        isolate_trials=False, **TINY)  # fmt: skip
    took = time.monotonic() - began
    printed = capsys.readouterr().out
    assert "its schedule paced to end with them" in printed
    epochs = result["best"]["retrained_epochs"]
    assert f"Trained {epochs} epochs in " in printed and epochs > 0
    assert took <= 1.05 * budget
    # It went on from the weights its trial trained, not from a fresh start.
    assert result["best"]["warm_start"] is True
    assert "The retraining starts from the weights its trial trained" in printed


def test_a_copy_whose_schedule_needs_no_length_stops_where_the_time_left_ends():
    from keras_residual.search.copies import StopAtDeadline

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    model.compile("sgd", "sparse_categorical_crossentropy")
    x, y = np.zeros((8, 4)), np.zeros(8, int)
    for deadline, epochs in ((time.monotonic() - 1, 1), (time.monotonic() + 3600, 5)):
        stop = StopAtDeadline(deadline)
        history = model.fit(x, y, epochs=5, verbose=0, callbacks=[stop])
        assert stop.epochs == len(history.epoch) == epochs and not stop.gave_up
    # Judged after 3 epochs: a million more at their pace pass an hour, 5 do not.
    for least, epochs, gave_up in ((10**6, 3, True), (5, 5, False)):
        stop = StopAtDeadline(time.monotonic() + 3600, least, judge_after=3)
        history = model.fit(x, y, epochs=5, verbose=0, callbacks=[stop])
        assert (stop.epochs, len(history.epoch), stop.gave_up) == (epochs, epochs, gave_up)


def test_a_final_recipe_whose_first_epochs_say_it_would_not_fit_keeps_nothing(monkeypatch):
    """The first copy of a final recipe is timed on its first epochs; if they say not even
    `LEAST_SHARE` of its epochs would fit before the deadline, it is dropped and no copy is
    kept, so that the search retrains with the trials' recipe instead; later copies are
    only stopped at the deadline."""
    from keras_residual.search.run import JUDGE_AFTER

    judged, gave_up = [], [True]

    def retrain(hypermodel, hp, data, epochs, *, seed, verbose, recipe, callbacks, seconds,
                initial_weights):  # fmt: skip
        (stop,) = callbacks
        assert stop.least == 1350 and seconds is None  # 90% of the 1,500; stopped, not paced
        judged.append(stop.judge_after)
        stop.gave_up = gave_up[0]
        return seed

    monkeypatch.setattr("keras_residual.search.run.retrain", retrain)
    wang, soon = kr.get_recipe("wang2017").for_examples(36), time.monotonic() + 60
    kept = _Kept(1500)
    assert _retrain_members(None, None, None, kept, wang, 0, 0, 3, soon, 0.0) == []
    assert judged == [JUDGE_AFTER] and kept.kept == []
    gave_up[0] = False
    assert _retrain_members(None, None, None, _Kept(1500), wang, 0, 0, 2, soon, 0.0) == [0, 1]
    assert judged == [JUDGE_AFTER, JUDGE_AFTER, None]  # only the first copy is judged


def test_auto_final_epochs_keep_the_rest_of_the_budget_for_the_retraining(
    data_dir, tmp_path, monkeypatch
):
    """The trials get `trial_share` of the budget; the retraining the rest, in which a
    network must be retrainable for `min_final_epochs` or be skipped before it trains."""
    given = {}

    def tuner(*args, **kwargs):
        given.update(kwargs)
        raise KeyboardInterrupt  # the search itself is not the point

    monkeypatch.setitem(kr.search.tuner.TUNERS, "random", tuner)
    no_probe = (None, "")  # its seconds would shorten the split
    monkeypatch.setattr("keras_residual.search.run._first_trial", lambda *args: no_probe)
    with pytest.raises(KeyboardInterrupt):
        run_search("mnist", tmp_path / "o", time_budget=100, final_epochs="auto",
                   trial_share=0.3, min_final_epochs=4, data_dir=data_dir)  # fmt: skip
    assert 29 < given["time_budget"] <= 30 and given["retraining_budget"] == pytest.approx(70)
    assert given["retraining"].final_epochs == 4


def test_a_resumed_search_goes_on_with_the_budget_its_kept_trials_left(
    data_dir, tmp_path, monkeypatch, capsys, finished_search
):
    assert json.loads((finished_search.out / "spent.json").read_text())["seconds"] > 0
    given = {}

    def tuner(*args, **kwargs):
        given.update(kwargs)
        raise KeyboardInterrupt  # the search itself is not the point

    monkeypatch.setitem(kr.search.tuner.TUNERS, "random", tuner)
    monkeypatch.setattr("keras_residual.search.run._first_trial", lambda *args: (None, ""))
    config, out = SearchConfig.for_dataset("mnist", time_budget=100, data_dir=data_dir), tmp_path
    with pytest.raises(KeyboardInterrupt):
        run_search(config, out)
    assert 99 < given["time_budget"] <= 100
    (out / "spent.json").write_text(json.dumps({"seconds": 40.0}))  # as a killed search left it
    with pytest.raises(KeyboardInterrupt):
        run_search(config, out, resume=True)
    assert 59 < given["time_budget"] <= 60
    assert "40 s of the 100 s budget went to the trials kept." in capsys.readouterr().out
    # Counted from an earlier start (the command line's, TensorFlow's import included).
    with pytest.raises(KeyboardInterrupt):
        run_search(config, out, resume=True, started=time.monotonic() - 25)
    assert 34 < given["time_budget"] <= 35


class _ScoredOracle:
    """An oracle's ranking of completed trials, each with a score and a timing."""

    def __init__(self, *scored, flops=()):
        self.trials = {}
        for trial_id, (score, per_image) in enumerate(scored):
            trial = keras_tuner.engine.trial.Trial(
                keras_tuner.HyperParameters(), trial_id=str(trial_id), status="COMPLETED"
            )
            trial.score = score
            if flops:
                trial.metrics.update("flops", flops[trial_id])
            for name, value in (("seconds_per_image", per_image), ("overhead_seconds", 1.0),
                                ("validation_seconds", 0.5)):  # fmt: skip
                trial.metrics.update(name, value)
            self.trials[trial.trial_id] = trial

    def get_best_trials(self, n):
        return sorted(self.trials.values(), key=lambda t: -t.score)[:n]


def test_of_trials_alike_within_noise_the_one_with_most_epochs_in_the_time_left_retrains(
    capsys,
):
    # Scores 0.46, 0.45 and 0.40; epochs of 2.5, 1.5 and 1 s on 1,000 images: in 30 s
    # (28.5 planned, 1 to start) 11, 18 and 27 epochs.
    oracle, retraining = (
        _ScoredOracle((0.46, 2e-3), (0.45, 1e-3), (0.40, 5e-4)),
        Retraining(1, 1000),
    )
    first, second, _ = oracle.get_best_trials(3)
    # On 3,000 validation images the first two differ by less than two standard errors
    # (0.018): the second, which trains 18 epochs, is retrained; the third is out of it.
    assert _plan_retraining(oracle, retraining, 30.0, 3000) == (second, 18)
    assert "Trials 0, 1 score within noise of the best (0.018" in capsys.readouterr().out
    assert within_noise(oracle, 3000)[0] == [first, second]
    # On 300,000 the lead is real; without a count (MNIST's fixed final epochs), the best.
    assert _plan_retraining(oracle, retraining, 30.0, 300_000) == (first, 11)
    assert _plan_retraining(oracle, retraining, 30.0) == (first, 11)
    # The best's 12 epochs at least do not fit 25 s: of those alike, the one that fits.
    assert _plan_retraining(oracle, Retraining(12, 1000), 25.0, 3000) == (second, 15)


def test_the_preset_a_search_started_from_is_retrained_unless_a_lead_over_it_lasts(capsys):
    # Trial 0 is the preset (0.59, 188 MFLOPs); trial 1 a costlier network (484 MFLOPs)
    # and trial 2 a cheaper one (95 MFLOPs), both scoring 0.70 on 3,000 validation images.
    scored, flops = [(0.59, 1e-3), (0.70, 2e-3), (0.70, 5e-4)], (188e6, 484e6, 95e6)
    known = Incumbent("fast_cifar_s", "0", 0.59, 188e6)
    oracle, retraining = _ScoredOracle(*scored, flops=flops), Retraining(1, 1000)
    preset, costlier, cheaper = (oracle.trials[k] for k in "012")
    # Tied, the cheaper trains the most epochs; in trials of equal time its lead does not
    # count, so the preset is retrained.
    assert _plan_retraining(oracle, retraining, 30.0, 3000)[0] is cheaper
    assert _plan_retraining(oracle, retraining, 30.0, 3000, known)[0] is preset
    printed = capsys.readouterr().out
    assert (
        "Retraining the fast_cifar_s preset the search started from (trial 0) over trial 2 "
        in printed
    )
    assert (
        "a network cheaper than the fast_cifar_s preset (trial 0: 95 against 188 MFLOPs" in printed
    )
    # The costlier network, ahead by more than the noise (0.017), replaces it ...
    del oracle.trials["2"]
    assert _plan_retraining(oracle, retraining, 30.0, 3000, known)[0] is costlier
    # ... but not by a lead within the noise.
    costlier.score = 0.60
    assert _plan_retraining(oracle, retraining, 30.0, 3000, known)[0] is preset
    assert known.kept_over(0.60, 484e6, 3000).startswith(
        "not above the preset's 0.5900 by more than 0.018, two standard errors on 3,000"
    )
    # Without a count of validation images, any higher score is a lead.
    assert known.kept_over(0.5901, 484e6, None) is None
    assert known.kept_over(0.59, 484e6, None) == "no higher than the preset's 0.5900"
    assert noise_band(0.6, 3000) == pytest.approx(2 * (0.6 * 0.4 / 3000) ** 0.5)


def test_the_retraining_plans_its_test_in_validation_passes():
    data = _tiny_data()  # 32 test and 32 validation images
    for recipe, views in (("fast", 1), ("airbench", 6)):  # tta "none", "flip_translate"
        hypermodel = ResidualHyperModel((28, 28, 1), 10, recipe=recipe)
        assert _retraining(hypermodel, data, "auto").test_passes == views
        assert _retraining(hypermodel, data.subset(test=8), 3).test_passes == views / 4


@pytest.mark.slow
def test_retrain_trains_a_trials_configuration_afresh_on_train_and_val_images(tmp_path):
    tuner, data = _in_process_tuner(tmp_path, [4, 6]), _tiny_data()
    tuner.search(data, epochs=1, verbose=0)
    (trial,) = tuner.oracle.trials.values()
    hp = trial.hyperparameters
    model = retrain(tuner.hypermodel, hp, data, 3, verbose=0)
    assert model.count_params() == trial.metrics.get_last_value("params")
    batch = tuner.hypermodel.recipe_for(hp).batch_size
    images = len(data.y_train) + len(data.y_val)  # the validation split has done its job
    assert int(model.optimizer.iterations) == 3 * -(-images // batch)
    assert _retraining(tuner.hypermodel, data, 3).images == images  # and is planned for
    with pytest.raises(ValueError, match="epochs"):
        retrain(tuner.hypermodel, hp, data, 0)
    # Given its trial's checkpoint, the retraining starts from the weights the trial trained.
    trained, begins = tuner.load_model(trial).get_weights(), []

    class AtStart(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            begins.append(self.model.get_weights())

    checkpoint = tuner._get_checkpoint_fname(trial.trial_id)
    for start in (checkpoint, None):
        retrain(tuner.hypermodel, hp, data, 1, verbose=0, initial_weights=start,
                callbacks=[AtStart()])  # fmt: skip
    same = [all(map(np.array_equal, weights, trained)) for weights in begins]
    assert same == [True, False]


def _in_process_tuner(directory, width) -> RandomSearch:
    """A one-trial search over `width` that trains in this process."""
    return RandomSearch(
        ResidualHyperModel((28, 28, 1), 10, space={"width": width, "blocks_per_stage": 1}),
        objective="val_accuracy",
        max_trials=1,
        directory=directory,
        isolate_trials=False,
    )


def test_only_a_completed_trial_is_picked_for_the_retraining(tmp_path):
    hypermodel = ResidualHyperModel((28, 28, 1), 10, space={"width": [4, 6]})
    tuner = RandomSearch(hypermodel, objective="val_accuracy", directory=tmp_path, max_trials=3,
                         isolate_trials=False)  # fmt: skip
    oracle = tuner.oracle
    timing = {"seconds_per_image": 1e-3, "overhead_seconds": 1.0, "validation_seconds": 0.5}
    done = oracle.create_trial("tuner0")
    oracle.update_trial(done.trial_id, {"val_accuracy": 0.5, **timing}, step=1)
    done.status = "COMPLETED"
    oracle.end_trial(done)
    skipped = oracle.create_trial("tuner0")  # skipped before it trained: nothing timed
    skipped.status = "FAILED"
    oracle.end_trial(skipped)
    retraining = Retraining(5, 1000, 1.0)  # 1 + 5 x 1.5 + 0.5 = 9 s for the completed one
    assert retraining.pick(oracle, 10.0).trial_id == done.trial_id
    assert retraining.pick(oracle, 8.0) is None  # and none for the skipped one
    assert math.isinf(retraining(oracle, 8.0))


def test_no_trial_starts_that_the_budget_cannot_fit(tmp_path):
    tuner = _in_process_tuner(tmp_path, [4, 6])
    tuner.search(_tiny_data(), epochs=2, verbose=0)
    (trial,) = tuner.oracle.trials.values()
    # The next trial takes at least this one's training (2 epochs, like it), not its build.
    seconds = trial.metrics.get_last_value("fit_seconds")
    assert tuner.next_trial_seconds() == pytest.approx(seconds)
    assert seconds < trial.metrics.get_last_value("trial_seconds")
    tuner.time_budget, tuner._search_started = 1.5 * seconds, time.monotonic()
    tuner.pre_create_trial()  # 1.5x a trial left: one more fits
    # A retraining on 10x the images for 3 epochs: from the trial's steady cost per image.
    images = 10 * trial.metrics.get_last_value("train_examples")
    retraining = Retraining(final_epochs=3, images=images)
    estimate = retraining.seconds(trial)
    names = ("seconds_per_image", "validation_seconds", "epoch_overhead_seconds")
    per_image, validation, per_epoch, start = (
        trial.metrics.get_last_value(n) for n in (*names, "overhead_seconds")
    )
    epoch = per_image * retraining.images + validation + per_epoch
    assert estimate == pytest.approx(start + epoch * 3)
    steady = (per_image * 96 + validation + per_epoch) * 2
    assert 0 < steady < trial.metrics.get_last_value("fit_seconds")
    assert retraining.pick(tuner.oracle, estimate) is trial
    assert retraining.pick(tuner.oracle, estimate / 2) is None
    # No trial's retraining (3 epochs, each as long as 2 trials) fits: the search goes on
    # where each network is checked against its own retraining once built (a quicker one
    # may fit), and stops where none is.
    tuner.retraining = Retraining(final_epochs=3, images=round(2 * seconds / per_image))
    tuner.time_budget, tuner._search_started = 1.5 * seconds, time.monotonic()
    assert tuner.retraining.pick(tuner.oracle, 1.5 * seconds) is None
    assert tuner._reserved(1.5 * seconds) == 0
    tuner.pre_create_trial()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tuner.hypermodel, "takes_time_limit", False)
        with pytest.raises(TrialsStopped, match="the final retraining of any trial so far"):
            tuner.pre_create_trial()
    tuner.retraining = retraining
    tuner.time_budget = 1.5 * seconds + estimate  # a trial and the retraining fit
    tuner.pre_create_trial()
    tuner.time_budget = 0.5 * seconds + estimate
    with pytest.raises(TrialsStopped, match=f"and {estimate:.0f} s kept for the final retraining"):
        tuner.pre_create_trial()
    # final_epochs="auto": as many epochs as fit in the time, less the margin, at least one.
    one, start = (
        retraining.seconds(trial, 1) - retraining.seconds(trial, 0),
        retraining.seconds(trial, 0),
    )
    assert start == pytest.approx(trial.metrics.get_last_value("overhead_seconds"))
    for epochs in (1, 4, 9):
        seconds = (start + (epochs + 0.5) * one) / (1 - AUTO_MARGIN)
        assert Retraining(1, images).epochs_within(trial, seconds) == epochs
    assert Retraining(1, images).epochs_within(trial, start / 2) == 1
    assert Retraining(1, images, most_epochs=4).epochs_within(trial, seconds) == 4  # fit 9
    assert Retraining(5, images, most_epochs=4).epochs_within(trial, seconds) == 5  # least
    # The test after it (say 10,000 images in 6 views against 5,000 validated: 12 passes)
    # is planned for too, so the epochs it takes are not given to the retraining.
    tested = Retraining(1, images, test_passes=12)
    assert tested.seconds(trial, 0) == pytest.approx(start + 12 * validation)
    seconds = (start + 12 * validation + 4.5 * one) / (1 - AUTO_MARGIN)
    assert tested.epochs_within(trial, seconds) == 4


def test_no_trial_starts_once_patience_trials_since_the_best_scored_no_higher(tmp_path):
    """The trials are read in the order they started; an equal score is no progress."""
    tuner = _in_process_tuner(tmp_path, [4, 6, 8])
    tuner.oracle.max_trials = 3
    tuner.search(_tiny_data(), epochs=1, verbose=0)
    trials = sorted(
        tuner.oracle.trials.values(), key=lambda t: t.metrics.get_last_value("started_at")
    )
    assert len(trials) == 3
    tuner.patience = 2
    for scores, best in (((0.5, 0.4, 0.5), 0), ((0.5, 0.5, 0.5), 0), ((0.4, 0.5, 0.3), None),
                         ((0.3, 0.4, 0.5), None), ((0.5, 0.4), None)):  # fmt: skip
        for trial, score in zip(trials, scores, strict=False):  # the last may still run
            trial.score = score
        for trial in trials[len(scores) :]:  # and has no score yet
            trial.score = None
        if best is None:
            tuner.pre_create_trial()
        else:
            why = f"2 trials since trial {trials[best].trial_id} scored no higher than its 0.500"
            with pytest.raises(TrialsStopped, match=re.escape(f"{why} (patience 2)")):
                tuner.pre_create_trial()
    tuner.patience = 1  # with one, each trial must beat the best
    for trial, score in zip(trials, (0.4, 0.5, 0.3), strict=True):
        trial.score = score
    with pytest.raises(TrialsStopped, match=f"1 trial since trial {trials[1].trial_id} "):
        tuner.pre_create_trial()
    tuner.patience = None
    tuner.pre_create_trial()


def test_patience_under_a_preset_counts_the_trials_that_could_not_replace_it(tmp_path):
    """While the best is the preset an equal-time search started from, a trial improves
    only by replacing it (`Incumbent.kept_over`): a lead within noise, or a cheaper
    network, is no progress."""
    hypermodel = ResidualHyperModel((28, 28, 1), 10)
    [(name, values)] = hypermodel.baselines()
    tuner = RandomSearch(hypermodel, objective="val_accuracy", directory=tmp_path, max_trials=9,
                         first_values=values, isolate_trials=False, retraining_budget=60.0,
                         trial_seconds=5.0, patience=2, validated=3000)  # fmt: skip

    def completes(score, flops):
        trial = tuner.oracle.create_trial("tuner0")
        metrics = {"val_accuracy": score, "flops": flops, "trial_seconds": 5.0}
        metrics["started_at"] = time.time()
        tuner.oracle.update_trial(trial.trial_id, metrics, step=1)
        trial.status = "COMPLETED"
        tuner.oracle.end_trial(trial)
        return trial

    preset = completes(0.60, 5e6)
    completes(0.61, 9e6)  # ahead by less than the noise (0.018 on 3,000 images)
    tuner.pre_create_trial()
    completes(0.65, 2e6)  # far ahead, but cheaper: its lead would not last
    why = f"2 trials since trial {preset.trial_id}, the {name} preset the search started from, "
    with pytest.raises(TrialsStopped, match=re.escape(f"{why}could not replace it (patience 2)")):
        tuner.pre_create_trial()
    completes(0.65, 9e6)  # ahead by more than the noise, and costlier: replaces it
    completes(0.66, 9e6)  # past the preset, the best is the best score again
    tuner.pre_create_trial()
    completes(0.50, 9e6)
    completes(0.66, 9e6)  # an equal score is no progress
    with pytest.raises(TrialsStopped, match="2 trials since trial .* its 0.660 \\(patience 2\\)"):
        tuner.pre_create_trial()
    tuner.patience = None
    tuner.pre_create_trial()


@pytest.mark.slow
def test_a_search_with_patience_ends_its_trials_once_none_beats_the_best(
    data_dir, tmp_path, capsys
):
    out = tmp_path / "patience"
    run_search("mnist", out, max_trials=4, patience=1, data_fraction=0.05, final_epochs=0,
               data_dir=data_dir, verbose=0, isolate_trials=False, **TINY)  # fmt: skip
    printed = capsys.readouterr().out
    rows = json.loads((out / "results.json").read_text())["trials"]
    rows = sorted((r for r in rows if r["status"] == "completed"), key=lambda r: r["started_at"])
    scores = [r["val_accuracy"] for r in rows]
    # The trials go on while each beats every one before it, and end at the first that does not.
    ended = next((k for k in range(1, len(scores)) if scores[k] <= max(scores[:k])), None)
    if ended is None:
        assert len(rows) == 4 and "(patience 1)" not in printed
    else:
        assert len(rows) == ended + 1
        assert re.search(r"Search stopped: 1 trial since trial \d+ scored no higher than its "
                         r"[0-9.]+ \(patience 1\); no new trials launched\.", printed)  # fmt: skip


def test_each_trial_gets_the_time_limit_of_the_time_left(tmp_path):
    tuner = _in_process_tuner(tmp_path, [4, 6])
    tuner.search(_tiny_data(), epochs=2, verbose=0)
    (trial,) = tuner.oracle.trials.values()
    assert tuner.time_limit(trial) is None  # no budget
    flops = trial.metrics.get_last_value("flops")
    tuner.retraining = Retraining(final_epochs=3, images=960)
    tuner.time_budget, tuner._search_started = 100.0, time.monotonic()
    limit = tuner.time_limit(trial)
    assert 99 < limit.seconds <= 100 and limit.reserved == tuner.retraining.seconds(trial)
    assert (limit.trial_images, limit.trial_epochs) == (96, 2)
    assert (limit.retrain_images, limit.retrain_epochs) == (960, 3)
    # The trial's own network is estimated at its own timing.
    assert limit.cost.timing(flops) == Timing.of(trial)
    assert limit.check(flops) is None  # a network like it fits 100 s
    assert "more than the" in limit.check(1e6 * flops)
    tuner.retraining_budget = 50.0  # final_epochs="auto": the retraining's own seconds
    limit = tuner.time_limit(trial)
    assert (limit.reserved, limit.after, limit.retrain_epochs) == (0, 50.0, 3)
    # With an epoch ceiling, the trials give up what the best trial's retraining at the
    # ceiling needs beyond the retraining's own seconds, and stop where one more would
    # cut it short.
    tuner.retraining = Retraining(final_epochs=3, images=960, most_epochs=300)
    ceiling = tuner.retraining.seconds(trial, 300) / (1 - AUTO_MARGIN)
    assert tuner.retraining.to_ceiling(tuner.oracle) == pytest.approx(ceiling)
    tuner.retraining_budget = ceiling / 4
    assert tuner.time_limit(trial).reserved == pytest.approx(3 * ceiling / 4)
    one_more = tuner.next_trial_seconds()
    tuner.time_budget, tuner._search_started = 3 * ceiling / 4 + 3 * one_more, time.monotonic()
    tuner.pre_create_trial()
    tuner.time_budget = 3 * ceiling / 4 + one_more / 2
    with pytest.raises(TrialsStopped, match="kept for the final retraining"):
        tuner.pre_create_trial()
    tuner.retraining_budget = 2 * ceiling  # its own seconds reach the ceiling: none kept
    assert tuner.time_limit(trial).reserved == 0
    tuner.retraining.most_epochs = None
    assert tuner.retraining.to_ceiling(tuner.oracle) == 0
    tuner.retraining_budget = 50.0
    # A network probed in another trial (timed a few steps) joins the cost model, and this
    # trial's own probe is recorded beside its trial.json.
    save_probe(os.path.join(tuner.project_dir, "trial_9", PROBE_FILE), 5 * flops, Timing(0, 1))
    limit = tuner.time_limit(trial)
    assert limit.cost.flops == (flops, 5 * flops) and limit.cost.timing(5 * flops).per_image == 1
    assert limit.probe_file == os.path.join(tuner.get_trial_dir(trial.trial_id), PROBE_FILE)


def test_steady_time_parts_an_epochs_own_cost_from_its_steps(monkeypatch):
    """Epochs of a few steps (a small time-series set) cost mostly their own start: the
    trial's timing says so, so that a retraining of hundreds of such epochs is planned
    with it (it ran 26% over a 10-minute budget without)."""
    from keras_residual.search import trials

    clock = iter(range(1000))
    monkeypatch.setattr(trials.time, "perf_counter", lambda: float(next(clock)))
    steady = trials._SteadyTime()
    for epoch in range(3):  # each call reads the clock one second later
        steady.on_epoch_begin(epoch)
        for _ in range(2):  # two steps of one second each
            steady.on_train_batch_begin(0)
            steady.on_train_batch_end(0)
        steady.on_test_begin()  # validation: one second
        steady.on_test_end()
        steady.on_epoch_end(epoch)  # 7 s an epoch: 2 in steps, 1 validating, 4 besides
    assert (steady.steps, steady.seconds, steady.validation) == (5, 5.0, 1.0)
    assert steady.per_epoch == 4.0


def test_cost_model_interpolates_between_the_trials_timed():
    cost = CostModel(flops=(10.0, 30.0, 50.0), per_image=(1.0, 2.0, 2.0), validation=(0, 0, 4),
                     overhead=5.0)  # fmt: skip
    assert cost.timing(20.0) == Timing(5.0, 1.5, 0.0)  # between two trials
    assert cost.timing(2.0) == Timing(5.0, 1.0, 0.0)  # below the smallest: as costly
    # Above the largest: along the least-squares slopes (per image 0.025; validation's 0.1
    # is steeper than in proportion to the FLOPs, 4 / 50, and capped there).
    assert cost.timing(90.0) == Timing(5.0, pytest.approx(3.0), pytest.approx(7.2))
    single = CostModel(flops=(10.0,), per_image=(1.0,), validation=(2.0,), overhead=0.0)
    assert single.timing(30.0) == Timing(0.0, 3.0, 6.0)  # one trial: by the FLOPs
    # Two trials of almost the same FLOPs (a squeeze-excitation apart), one timed slower:
    # their slope (0.2 s per FLOP) would put a 3x network at 41 s; capped, it costs 3x.
    twins = CostModel(flops=(100.0, 101.0), per_image=(1.0, 1.2), validation=(0, 0), overhead=0)
    assert twins.timing(303.0).per_image == pytest.approx(3.6)
    assert Timing(5.0, 1.5, 2.0).seconds(images=10, epochs=2) == 5 + (15 + 2) * 2
    # An epoch's own cost (its data's start, the callbacks) counts once an epoch, and a
    # network's forecast takes the largest timed.
    assert Timing(5.0, 1.5, 2.0, 0.5).seconds(images=10, epochs=2) == 5 + (15 + 2 + 0.5) * 2
    epochs = CostModel.from_timings([(1.0, Timing(0, 1.0, 0, 0.2)), (2.0, Timing(0, 2.0, 0, 0.3))])
    assert epochs.timing(1.5).per_epoch == 0.3
    fits = {"trial_images": 10, "trial_epochs": 1, "retrain_images": 20, "retrain_epochs": 1}
    limit = TimeLimit(seconds=50, reserved=0, **fits, cost=cost)
    assert limit.check(10.0) is None  # 15 s to train, 25 s to retrain
    assert limit.check(30.0) == (
        "about 25 s to train and about 45 s to retrain: more than the 50 s left"
    )
    # At 40 FLOPs: 27 s to train and 47 s to retrain; a test of 15 validation passes adds 30.
    assert TimeLimit(seconds=100, reserved=0, **fits, cost=cost).check(40.0) is None
    tested = TimeLimit(seconds=100, reserved=0, **fits, cost=cost, test_passes=15)
    assert tested.check(40.0) == (
        "about 27 s to train and about 77 s to retrain: more than the 100 s left"
    )
    kept = TimeLimit(seconds=50, reserved=40, **fits, cost=cost)
    assert "40 s kept for the best so far's retraining" in kept.check(20.0)  # 20 + 40 > 50
    # final_epochs="auto": the retraining has time of its own after the trials (`after`),
    # of which it may plan on all but the margin (45 of 47 s); the trial fits what is left.
    own = TimeLimit(seconds=19, reserved=0, **fits, cost=cost, after=47)
    assert own.check(10.0) is None  # 15 s to train, 25 s to retrain
    assert own.check(20.0) == "about 20 s to train: more than the 19 s left"  # 35 s after
    assert own.check(40.0) == (
        "about 47 s to retrain for 1 epoch and test: more than the 45 s kept for it"
    )


def test_a_forecast_beyond_every_network_timed_is_checked_by_a_probe(tmp_path):
    cost = CostModel(flops=(10.0,), per_image=(1.0,), validation=(2.0,), overhead=0.0)
    limit = TimeLimit(30, 0, 10, 1, 0, 0, cost, probe_file=str(tmp_path / PROBE_FILE))
    # At 30 FLOPs the forecast (3 s an image, 6 s a validation) is 36 s: too slow, but
    # worth timing, as it would fit at PROBE_GAIN (2) times the speed; at 70 FLOPs even
    # that would not fit, and a network like one timed is never probed.
    assert PROBE_GAIN == 2 and limit.check(30.0) == "about 36 s to train: more than the 30 s left"
    assert limit.worth_probing(30.0) and not limit.worth_probing(70.0)
    assert limit.check(10.0) is None and not replace(limit, seconds=5).worth_probing(10.0)
    # Below the smallest timed, a network is forecast as costly (12 s): with 8 s left it is
    # timed before it is refused (6 s at twice the speed would fit), with 5 s it is not.
    assert replace(limit, seconds=8).check(5.0) == "about 12 s to train: more than the 8 s left"
    assert replace(limit, seconds=8).worth_probing(5.0)
    assert not replace(limit, seconds=5).worth_probing(5.0)
    timing, left = limit.probed(30.0, per_image=1.2, seconds=4.0)
    assert timing == Timing(0.0, 1.2, pytest.approx(2.4))  # validation scaled as training
    assert left.seconds == 26 and left.check(30.0, timing) is None  # 14.4 s
    assert load_probe(tmp_path / PROBE_FILE) == (30.0, timing)
    probed = CostModel.from_timings([(10.0, Timing(0.0, 1.0, 2.0)), load_probe(limit.probe_file)])
    assert probed.timing(30.0) == timing and probed.timing(20.0).per_image == pytest.approx(1.1)
    (tmp_path / "torn.json").write_text('{"flops": 3')
    assert load_probe(tmp_path / "torn.json") is None and load_probe(tmp_path / "none") is None


@pytest.mark.parametrize("per_image", [1.0, 1e-8])
def test_a_network_forecast_too_slow_is_probed_before_it_is_skipped(per_image, tmp_path):
    hypermodel = ResidualHyperModel(
        (28, 28, 1), 10, space={"width": 4, "blocks_per_stage": 1, "batch_size": 16}
    )
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    flops = count_flops(model)
    # Timed at half its FLOPs: the forecast, 2x `per_image` an image, is 1.5x the time left.
    cost = CostModel((flops / 2,), (per_image,), (0.0,), 0.0)
    limit = TimeLimit(128 * per_image, 0, 96, 1, 0, 0, cost, probe_file=str(tmp_path / "p.json"))
    assert limit.check(flops) and limit.worth_probing(flops)
    if per_image == 1e-8:  # forecast 2e-8 s an image: no network is that quick
        with pytest.raises(keras_tuner.errors.FailedTrialError, match=r"timed over 2 steps\)"):
            hypermodel.fit(hp, model, _tiny_data(), time_limit=limit, verbose=0)
    else:  # forecast 2 s an image: a tiny network is far quicker, and trains
        record = hypermodel.fit(hp, model, _tiny_data(), time_limit=limit, verbose=0)
        assert record["next_epoch"] == 1 and np.isfinite(record["val_loss"])
    probe_flops, timing = load_probe(limit.probe_file)  # measured, either way
    assert probe_flops == flops and (timing.per_image < per_image) == (per_image == 1.0)


def test_trials_at_equal_time_train_a_quicker_network_for_more_epochs(tmp_path, monkeypatch):
    # Probed (here: as told) at 1 and 4 ms an image: on 96 images, validated on 32 (a third
    # of training's cost an image), epochs of 0.107 and 0.427 s; 0.5 s a trial: 4 and 1.
    per_image = {4: 1e-3, 6: 4e-3}
    monkeypatch.setattr(
        kr.search.trials, "probe", lambda hypermodel, hp, *args: per_image[hp.get("width")]
    )
    tuner = _in_process_tuner(tmp_path, [4, 6])
    tuner.oracle.max_trials, tuner.trial_seconds = 2, 0.5
    tuner.search(_tiny_data(), epochs=1, verbose=0)
    trained = {
        t.hyperparameters["width"]: t.metrics.get_last_value("epochs")
        for t in tuner.oracle.trials.values()
    }
    assert trained == {4: 4, 6: 1}
    assert tuner.next_trial_seconds() >= 0.5  # the budget plans a trial's time, not an epoch
    # Hyperband's trials keep their rung's epochs.
    rung = keras_tuner.HyperParameters()
    rung.Fixed("tuner/epochs", 2)
    assert not tuner._equal_time(keras_tuner.engine.trial.Trial(rung))
    assert tuner._equal_time(keras_tuner.engine.trial.Trial(keras_tuner.HyperParameters()))


def _planned_trial(monkeypatch):
    """A tiny network, its hyperparameters, FLOPs and a `TimeLimit` whose cost model
    forecasts it within the networks timed (0.096 s of steps and 0.01 of validation an
    epoch of `_tiny_data`), so nothing is probed."""
    hypermodel = ResidualHyperModel((28, 28, 1), 10, space={"width": 4, "blocks_per_stage": 1})
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    flops = count_flops(model)
    monkeypatch.setattr(kr.search.trials, "probe", lambda *args: pytest.fail("probed"))
    cost = CostModel((flops / 2, 2 * flops), (1e-3, 1e-3), (0.01, 0.01), 0.0)
    return hypermodel, hp, model, flops, TimeLimit(10.0, 0.0, 96, 1, 0, 0, cost)


def test_an_equal_time_trial_plans_epochs_and_images_on_the_cost_model_and_fits_them(monkeypatch):
    hypermodel, hp, model, flops, limit = _planned_trial(monkeypatch)
    cost, data = limit.cost, _tiny_data()
    record = hypermodel.fit(hp, model, data, time_limit=limit, trial_seconds=0.35, verbose=0)
    assert record["next_epoch"] == 3
    # 0.2 s left holds one epoch, not the three the trial's time plans: skipped.
    assert replace(limit, seconds=0.2).check(flops) is None
    with pytest.raises(keras_tuner.errors.FailedTrialError, match="skipped before training"):
        hypermodel.fit(hp, model, _tiny_data(), time_limit=replace(limit, seconds=0.2),
                       trial_seconds=0.35, verbose=0)  # fmt: skip
    assert equal_time_plan(0.05, 2, 96, cost.timing(flops)) == (2, 15)  # at least `epochs`
    # Batches of 16: 3 epochs of all 96 images would leave 0.03 s, 4 of 77 fill the 0.35 s.
    record = hypermodel.fit(hp, model, _tiny_data(), time_limit=limit, trial_seconds=0.35,
                            batch_size=16, verbose=0)  # fmt: skip
    assert (record["next_epoch"], record["train_examples"]) == (4, 77)
    # Half an epoch's time: half an epoch's images (less its validation), drawn at random.
    record = hypermodel.fit(hp, model, _tiny_data(), time_limit=limit, trial_seconds=0.058,
                            batch_size=16, verbose=0)  # fmt: skip
    assert (record["next_epoch"], record["train_examples"]) == (1, 48)
    # Part of the images is a draw, not the first: arrays sorted by class keep every class.
    x, y = np.arange(100)[:, None], np.repeat([0, 1], 50)
    part, labels = _drawn(x, y, 30)
    assert len(part) == 30 and set(labels) == {0, 1} and (y[part[:, 0]] == labels).all()
    assert _drawn(x, y, 30)[0].tolist() == part.tolist()  # the same for every trial
    # Forecast from a network of an eighth of its FLOPs: 0.85 s an epoch, longer than the
    # trial even at PROBE_GAIN times that speed: one epoch, planned without a probe.
    beyond = CostModel((flops / 8,), (1e-3,), (0.01,), 0.0)
    record = hypermodel.fit(hp, model, _tiny_data(), time_limit=replace(limit, cost=beyond),
                            trial_seconds=0.35, verbose=0)  # fmt: skip
    assert record["next_epoch"] == 1


def test_a_trial_behind_the_preset_halfway_through_its_trial_stops_there(monkeypatch):
    hypermodel, hp, model, flops, limit = _planned_trial(monkeypatch)
    options = {"time_limit": limit, "trial_seconds": 0.35, "halving": True, "verbose": 0}
    # Halves: not 3 epochs of all 96 images (the plan without them) but 2 (4 of 77 each
    # would be less than a batch), the score at the end of the first recorded.
    record = hypermodel.fit(hp, model, _tiny_data(), **options)
    assert (record["next_epoch"], record["train_examples"]) == (2, 96)
    assert 0 <= record["halfway_val_accuracy"] < 1 and "stopped_behind" not in record
    # Behind a preset that scored 1.0 halfway through (exactly: no noise band), a trial
    # stops at the end of its first epoch; at or ahead of it, it goes on.
    ahead = Incumbent("fast_mnist", "00", 1.0, flops, halfway=1.0)
    stopped = hypermodel.fit(hp, hypermodel.build(hp), _tiny_data(), incumbent=ahead, **options)
    assert stopped["next_epoch"] == 1 and stopped["stopped_behind"] == 1.0
    assert stopped["halfway_val_accuracy"] < 1
    behind = replace(ahead, halfway=0.0)
    going_on = hypermodel.fit(hp, hypermodel.build(hp), _tiny_data(), incumbent=behind, **options)
    assert going_on["next_epoch"] == 2 and "stopped_behind" not in going_on
    # Without halving, nothing is recorded halfway and nothing stops.
    options["halving"] = False
    whole = hypermodel.fit(hp, hypermodel.build(hp), _tiny_data(), incumbent=ahead, **options)
    assert whole["next_epoch"] == 3 and "halfway_val_accuracy" not in whole


def test_a_stopped_trial_is_listed_as_stopped_with_both_halfway_scores(tmp_path):
    tuner = _in_process_tuner(tmp_path, 4)
    trial = tuner.oracle.create_trial("tuner0")
    scores = {"val_accuracy": 0.41, "halfway_val_accuracy": 0.41, "stopped_behind": 0.6}
    tuner.oracle.update_trial(trial.trial_id, scores, step=1)
    trial.status = "COMPLETED"
    tuner.oracle.end_trial(trial)
    [row] = kr.search.collect_rows(tmp_path / "untitled_project")
    assert row["status"] == "stopped" and row["halfway_val_accuracy"] == pytest.approx(0.41)
    assert (
        row["reason"]
        == "halfway through its trial, 0.4100 against the preset's 0.6000 there: stopped"
    )
    assert " stopped " in kr.search.format_table([row])


def test_a_network_too_slow_for_the_time_left_is_skipped_before_it_trains(tmp_path):
    tuner = _in_process_tuner(tmp_path, [4, 6])
    tuner.oracle.max_trials = 2
    cost = CostModel(flops=(1.0,), per_image=(1.0,), validation=(0.0,), overhead=0.0)
    slow = TimeLimit(10.0, 0.0, 96, 1, 0, 0, cost)  # 1 s an image: far too slow

    tuner.time_limit = lambda trial: slow if trial.trial_id != "0" else None
    tuner.search(_tiny_data(), epochs=1, verbose=0)
    first, second = (tuner.oracle.trials[i] for i in ("0", "1"))
    assert first.status == "COMPLETED"
    assert second.status == "FAILED" and "skipped before training: about" in second.message
    assert not second.metrics.exists("val_accuracy")  # it never trained
    rows = {r["trial_id"]: r for r in kr.search.collect_rows(tuner.project_dir)}
    assert (rows["0"]["status"], rows["1"]["status"]) == ("completed", "skipped")
    skipped_line = kr.search.format_table(list(rows.values())).splitlines()[-1]
    assert "skipped" in skipped_line and "None" not in skipped_line  # blanks read "-"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dataset": "imagenet"}, "`dataset`"),
        ({"time_budget": "0m"}, "`time_budget` must be positive"),
        ({"time_budget": "soon"}, "`time_budget` must look like"),
        ({"max_trials": 0}, "`max_trials`"),
        ({"tuner": "grid"}, "`tuner`"),
        ({"width": {"min": 16, "max": 8}}, "empty or inverted"),
        ({"max_params": 1000}, "No network of the search space meets the constraints"),
        ({"max_mflops": -1}, "`max_mflops`"),
        ({"final_epochs": "auto"}, "give a `time_budget` too"),
        ({"final_epochs": "lots"}, "non-negative integer or 'auto'"),
        ({"final_epochs": True}, "non-negative integer or 'auto'"),
        ({"final_epochs": "auto", "time_budget": "1m", "trial_share": 1}, "`trial_share`"),
        ({"final_epochs": "auto", "time_budget": "1m", "min_final_epochs": 0}, "`min_final_"),
        ({"min_final_epochs": 5, "max_final_epochs": 3}, r"`max_final_epochs` \(3\) must be"),
        ({"max_final_epochs": 0}, "`max_final_epochs`"),
    ],
)
def test_bad_input_fails_before_any_work(kwargs, message, tmp_path, data_dir):
    out = tmp_path / "never"
    with pytest.raises(ValueError, match=message):
        run_search(out=out, data_dir=data_dir, **{"dataset": "mnist", **kwargs})
    assert not out.exists()


def test_output_directory_of_another_search_is_refused(data_dir, finished_copy):
    out, other = finished_copy, {**FINISHED_SEARCH, "width": [4, 12]}
    with pytest.raises(ValueError, match="different search.*width"):
        run_search("mnist", out, data_dir=data_dir, **other)
    with pytest.raises(ValueError, match="--resume"):
        run_search("mnist", out, data_dir=data_dir, **FINISHED_SEARCH)


def _cli(*args, env=None):
    command = [sys.executable, "-m", "keras_residual", "search", *args]  # as `python -m`
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    return subprocess.Popen(
        command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _search_args(data_dir, out, trials):
    """A tiny search whose trials train in its own process: one TensorFlow start a run (a
    search killed with its trial process: test_reliability)."""
    return ["--data-dir", str(data_dir), "--out", str(out), "--max-trials", str(trials),
            "--width", "4,6,8,10", "--blocks-per-stage", "1", "--in-process"]  # fmt: skip


def _wait_for(predicate, timeout=180):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


@pytest.mark.slow
def test_killed_hyperband_search_resumes_without_losing_or_repeating_trials(data_dir, tmp_path):
    out = tmp_path / "killed"
    # Hyperband to 3 epochs (factor 3): bracket 1 trains 3 networks 1 epoch and continues
    # the best to 3, bracket 0 trains one more for 3 epochs: 5 trials.
    args = [*_search_args(data_dir, out, 6), "--tuner", "hyperband", "--epochs", "3"]
    args += ["--time-budget", "none"]  # the MNIST default, 3 final epochs, not budget-filled
    # Kill during the first trial, then inside bracket 1's first round, then finish.
    for started_before_kill in (1, 3):
        process = _cli(*args, *(["--resume"] if started_before_kill > 1 else []))
        _wait_for(lambda n=started_before_kill: len(list(out.glob("tuner/trial_*"))) >= n)
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert _cli(*args, "--resume").wait(timeout=300) == 0
    rows = read_csv(out / "results.csv")
    assert [r["trial_id"] for r in rows] == ["0000", "0001", "0002", "0003", "0004"]
    assert all(r["status"] == "completed" for r in rows)
    rungs = [(r["tuner/bracket"], r["tuner/round"], r["epochs"]) for r in rows]
    assert rungs == [("1", "0", "1")] * 3 + [("1", "1", "3"), ("0", "0", "3")]
    first_round = max(rows[:3], key=lambda r: float(r["val_accuracy"]))
    assert rows[3]["tuner/trial_id"] == first_round["trial_id"]  # the best one promoted
    assert rows[3]["width"] == first_round["width"]
    assert (out / "best_model.keras").exists()
    ladder = kr.search.promotion_ladder(json.loads((out / "results.json").read_text())["trials"])
    assert f"round 1, 3 epochs: 0003<-{first_round['trial_id']}" in ladder


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_distributed_chief_and_two_workers_one_killed(data_dir, tmp_path):
    """The chief and the surviving worker finish the search: the killed worker's trial is
    ended by the chief's watch and handed out again."""
    out = tmp_path / "distributed"
    base = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(_free_port())}
    args = [*_search_args(data_dir, out, 4), "--distributed", "--worker-timeout", "8"]
    chief = _cli(*args, env={**base, "KERASTUNER_TUNER_ID": "chief"})
    workers = [_cli(*args, env={**base, "KERASTUNER_TUNER_ID": f"tuner{i}"}) for i in (0, 1)]
    _wait_for(lambda: any((out / "tuner").glob("trial_*")))
    time.sleep(1.0)
    workers[0].send_signal(signal.SIGKILL)
    assert chief.wait(timeout=400) == 0
    assert workers[1].wait(timeout=60) == 0
    rows = read_csv(out / "results.csv")
    assert len(rows) == 4
    assert sum(r["status"] == "completed" for r in rows) >= 3
    assert (out / "best_model.keras").exists()


def test_space_file_narrows_dimensions(tmp_path):
    path = tmp_path / "space.json"
    path.write_text(json.dumps({"width": [8, 32], "preact": True}))
    space = resolve_space("cifar10", kr.search.load_space_file(path))
    assert space["width"] == [8, 32] and space["preact"] is True
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        kr.search.load_space_file(path)
    with pytest.raises(ValueError, match="Cannot read"):
        kr.search.load_space_file(tmp_path / "missing.json")


def test_report_rebuilds_results_from_a_search_directory(finished_copy, tmp_path, capsys):
    from keras_residual_cli import main

    out = finished_copy
    (out / "results.csv").unlink()
    assert main(["report", str(out)]) == 0
    assert len(read_csv(out / "results.csv")) == 3 and "val_acc" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nothing")]) == 2


class CrashingHyperModel(ResidualHyperModel):
    """Trials of width 4 die the way the kernel's out-of-memory killer ends a process."""

    def fit(self, hp, model, *args, **kwargs):
        if hp.get("width") == 4:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().fit(hp, model, *args, **kwargs)


def _tiny_data():
    x, y = learnable_images(96, (28, 28, 1))
    return kr.Dataset("mnist", x, y, x[:32], y[:32], x[:32], y[:32], tuple("0123456789"))


@pytest.mark.slow
def test_a_trial_whose_process_dies_fails_alone(tmp_path, capsys):
    ended = []
    tuner = RandomSearch(
        CrashingHyperModel((28, 28, 1), 10, space={"width": [4, 6], "blocks_per_stage": 1}),
        objective="val_accuracy",
        max_trials=2,
        directory=tmp_path,
        seed=1,
        on_trial_done=lambda t: ended.append((t.hyperparameters["width"], t.status, t.message)),
    )
    tuner.search(_tiny_data(), epochs=1, verbose=1)
    outcome = {width: (status, message) for width, status, message in ended}
    assert outcome[4][0] == "FAILED" and "killed by SIGKILL" in outcome[4][1]
    assert outcome[6][0] == "COMPLETED"
    assert "val_accuracy:" in capsys.readouterr().out  # the trial's progress bar, relayed
    best = tuner.load_model(tuner.oracle.get_best_trials(1)[0])  # the child's checkpoint
    assert best.get_layer("stage1_entry_conv").filters == 6


class GrowingHyperModel(ResidualHyperModel):
    """Each trial keeps 512 MiB more alive in its process and writes down its process id."""

    ballast = []

    def fit(self, hp, model, *args, **kwargs):
        self.ballast.append(np.ones(512 * 2**20, "uint8"))
        Path(self.folder, f"{hp.get('width')}.pid").write_text(str(os.getpid()))
        return super().fit(hp, model, *args, **kwargs)


@pytest.mark.slow
def test_trials_share_a_process_until_it_grows_past_the_slack(tmp_path):
    hypermodel = GrowingHyperModel((28, 28, 1), 10, space=TINY)
    hypermodel.folder = tmp_path
    ended = []
    tuner = RandomSearch(
        hypermodel, objective="val_accuracy", max_trials=3, directory=tmp_path, seed=1,
        on_trial_done=lambda t: ended.append(t.hyperparameters["width"]),
    )  # fmt: skip
    tuner.search(_tiny_data(), epochs=1, verbose=0)
    pids = [(tmp_path / f"{width}.pid").read_text() for width in ended]
    # The second trial's 512 MiB outgrow the slack: its process is replaced after it.
    assert TrialProcesses.memory_slack_mib < 512
    assert pids[0] == pids[1] != pids[2]
    assert all(t.status == "COMPLETED" for t in tuner.oracle.trials.values())


def test_trials_can_run_in_this_process(tmp_path):
    tuner = _in_process_tuner(tmp_path, 4)
    tuner.search(_tiny_data(), epochs=1, verbose=0)
    (trial,) = tuner.oracle.trials.values()
    assert trial.status == "COMPLETED" and trial.metrics.exists("flops")


@pytest.mark.parametrize("seed", [None, 0, 7])
def test_a_seed_draws_the_same_trials_every_time(tmp_path, seed):
    def draws(directory):
        tuner = RandomSearch(
            ResidualHyperModel((28, 28, 1), 10),
            objective="val_accuracy",
            max_trials=4,
            directory=directory,
            seed=seed,
            isolate_trials=False,
        )
        return [tuner.oracle.create_trial(f"t{i}").hyperparameters.values for i in range(4)]

    first = draws(tmp_path / "a")
    assert draws(tmp_path / "b") == first
    assert len({json.dumps(values, sort_keys=True) for values in first}) == 4
