"""Run a search end to end: validate, search (resumable), export, save the best model."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import keras
import keras_tuner

from keras_residual import _checks
from keras_residual._files import check_output_dir, write_text_atomically
from keras_residual.data import DATASETS, Dataset, load_dataset
from keras_residual.precision import resolve_dtype
from keras_residual.search import distributed
from keras_residual.search.budget import Retraining
from keras_residual.search.results import (
    collect_rows,
    failure_reason,
    format_table,
    promotion_ladder,
    write_results,
)
from keras_residual.search.space import ResidualHyperModel, default_space_for, resolve_space
from keras_residual.search.state import check_oracle, read_json, repair_trials
from keras_residual.search.tuner import TUNERS
from keras_residual.techniques import tta_views
from keras_residual.training import evaluate, get_recipe

PROJECT = "tuner"  # keras-tuner's project folder inside the output directory
FINISHED = "finished.json"  # written last: the search ended and its best model is saved


class SearchFailed(RuntimeError):
    """No trial of a search completed; the results say why each failed."""


IDENTITY = (
    "dataset",
    "image_size",
    "tuner",
    "epochs",
    "seed",
    "dtype",
    "space",
    "max_params",
    "max_mflops",
    "data_fraction",
)  # what makes two searches alike


# The CLI's defaults by the data's default space: MNIST a few-minute job that tries every
# depth x width of its space on a fifth of the data and retrains the best that fits.
SEARCH_DEFAULTS = {
    "mnist": {
        "tuner": "random",
        "max_trials": 9,
        "epochs": 1,
        "time_budget": "4.5m",
        "final_epochs": 3,
        "min_final_epochs": 1,
        "data_fraction": 0.2,
    },
    "cifar10": {  # the budget decides: trials for half of it, the best retrained in the rest
        "tuner": "random",
        "max_trials": 32,
        "epochs": 1,
        "time_budget": "20m",
        "final_epochs": "auto",
        "min_final_epochs": 5,  # half the speed presets' 10; networks too slow are skipped
        "data_fraction": 1.0,
    },
}
SEARCH_DEFAULTS |= {
    "fashion_mnist": SEARCH_DEFAULTS["mnist"],
    "cifar100": SEARCH_DEFAULTS["cifar10"],
}


def search_defaults(dataset: str) -> dict:
    """The CLI's search settings for `dataset` (a folder or file: CIFAR-10's).

    Example:
    >>> search_defaults("mnist")["final_epochs"], search_defaults("photos/")["tuner"]
    (3, 'random')
    """
    return dict(SEARCH_DEFAULTS.get(str(dataset), SEARCH_DEFAULTS["cifar10"]))


def parse_duration(text: str | float | None) -> float | None:
    """Seconds from `90`, `90s`, `10m` or `1.5h`; None stays None.

    Example:
    >>> parse_duration("10m"), parse_duration("1.5h"), parse_duration(45)
    (600.0, 5400.0, 45.0)
    """
    if text is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600}
    raw = str(text).strip().lower()
    scale = units.get(raw[-1:])
    try:
        seconds = float(raw[:-1] if scale else raw) * (scale or 1)
    except ValueError:
        raise ValueError(f"`time_budget` must look like 90s, 10m or 1h; got {text!r}.") from None
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"`time_budget` must be positive and finite, got {text!r}.")
    return seconds


def _differing(recorded: dict, config: dict, keys) -> list[str]:
    """The settings among `keys` that `recorded` holds otherwise than `config`; a setting
    recorded before it existed reads as None."""
    return [k for k in keys if recorded.get(k) != config.get(k)]


def _check_directory(out: Path, config: dict, resume: bool) -> None:
    """Refuse a directory that holds another search, or this one without `resume`."""
    marker = out / "search.json"
    if marker.exists():
        way_out = (
            f" Its trials are intact: `keras-residual report {out}` lists them. To search on, "
            "start a new --out."
        )
        previous = read_json(marker, "the search's settings", way_out)
        differs = _differing(previous, config, [k for k in IDENTITY if k != "space"])
        space = previous.get("space", {})
        differs += [f"{k} dimension" for k in _differing(space, config["space"], config["space"])]
        if differs:
            raise ValueError(
                f"{out} belongs to a different search (its {', '.join(differs)} differ); "
                "choose another --out."
            )
        if not resume:
            raise ValueError(f"{out} already holds this search: pass --resume to continue it.")
    elif resume and (out / PROJECT).exists():
        raise ValueError(f"{out} holds a search without search.json; cannot resume it safely.")


def run_search(
    dataset: str | os.PathLike = "mnist",
    out: str | os.PathLike = "runs/search-mnist",
    *,
    tuner: str = "random",
    max_trials: int = 6,
    epochs: int = 1,
    time_budget: str | float | None = None,
    final_epochs: int | str = 0,
    trial_share: float = 0.5,
    min_final_epochs: int = 1,
    resume: bool = False,
    distributed_mode: bool = False,
    worker_timeout: float = 60.0,
    data_dir: str | os.PathLike | None = None,
    image_size: int | tuple[int, int] | None = None,
    max_params: int | None = None,
    max_mflops: float | None = None,
    data_fraction: float = 1.0,
    space: dict | None = None,
    seed: int = 0,
    dtype: str | None = "auto",
    verbose: int | str = "auto",
    **dimensions,
) -> dict:
    """Search residual architectures on a dataset and save the best model.

    `dataset` is a name of `keras_residual.data.DATASETS` or the path of a folder of
    class subfolders of images (resized to `image_size`) or of an `.npz` of arrays (see
    `load_dataset`); the default space follows the data (`default_space_for`).

    Writes into `out`: `results.csv`, `results.json`, `pareto.png`, `progress.png`
    (after every trial) and `best_model.keras` with its test accuracy (at the end).
    `final_epochs > 0` retrains the best configuration from scratch for that many
    epochs; with a `time_budget`, the search keeps the time to do so (a trial is skipped
    before it trains if its network could not be retrained in the time left) and the
    retraining takes as many more epochs as the time the trials leave fits (from the
    trial's seconds per image). `"auto"` (with a `time_budget`) launches trials for
    `trial_share` of the budget and retrains the best for as many epochs as fit in the
    rest, at least `min_final_epochs` (a network whose retraining for those would not
    fit the rest is skipped before it trains); 0 keeps the best trial's own weights.
    `dtype` is the trials' dtype policy, `"auto"` (resolved once, here, for this
    machine), None (Keras's global policy) or a policy name. `max_params` and
    `max_mflops` reject larger networks before they train (each such trial is recorded
    `rejected`, with the reason, and uses a trial).
    `data_fraction` < 1 trains the trials on that share of the training set (a cheaper,
    lower-fidelity proxy; validation, the final retraining and the test use all of it).
    Returns the results.

    Example:
    >>> run_search("mnist", "runs/quick", max_trials=2, width=8)  # doctest: +SKIP
    """
    dataset = str(dataset)
    _checks.choice("tuner", tuner, TUNERS)
    _checks.positive_int("max_trials", max_trials)
    _checks.positive_int("epochs", epochs)
    auto = final_epochs == "auto"
    whole = isinstance(final_epochs, int) and not isinstance(final_epochs, bool)
    if not auto and not (whole and final_epochs >= 0):  # as _checks.non_negative_int
        raise ValueError(
            f"`final_epochs` must be a non-negative integer or 'auto', got {final_epochs!r}."
        )
    if not (_checks.finite("trial_share", trial_share) and 0 < trial_share < 1):
        raise ValueError(f"`trial_share` must lie in (0, 1), got {trial_share!r}.")
    _checks.positive_int("min_final_epochs", min_final_epochs)
    _checks.positive("worker_timeout", worker_timeout)
    if not (_checks.finite("data_fraction", data_fraction) and 0 < data_fraction <= 1):
        raise ValueError(f"`data_fraction` must lie in (0, 1], got {data_fraction!r}.")
    budget = parse_duration(time_budget)
    if auto and budget is None:
        raise ValueError(
            "`final_epochs='auto'` retrains for the time the trials leave: give a "
            "`time_budget` too, or a number of final epochs."
        )
    started = time.monotonic()
    role = distributed.check_environment() if distributed_mode else distributed.role()
    dtype = resolve_dtype(dtype)
    out = check_output_dir(out)
    data = None
    if dataset in DATASETS:  # shape and classes known without reading the data
        shape, classes = DATASETS[dataset]["shape"], len(DATASETS[dataset]["classes"])
    else:  # the user's own data: read (and checked) before anything is written
        data = load_dataset(dataset, data_dir, seed=seed, image_size=image_size)
        shape, classes = data.input_shape, data.num_classes
    space_name = default_space_for(shape, dataset)
    resolved = resolve_space(space_name, space, **dimensions)
    constraints = {"max_params": max_params, "max_mflops": max_mflops}
    hypermodel = ResidualHyperModel(
        shape, classes, space_name, resolved, dtype=dtype, **constraints
    )
    hypermodel.spec(keras_tuner.HyperParameters())  # every dimension declares: fail now
    config = {"dataset": dataset, "image_size": image_size, "tuner": tuner, "epochs": epochs}
    config |= {"seed": seed, "dtype": dtype, "space": resolved, "max_trials": max_trials}
    config |= {"time_budget": budget, **constraints, "data_fraction": data_fraction}
    config = json.loads(json.dumps(config))  # as search.json reads back: lists for tuples
    if role != "worker":
        _check_directory(out, config, resume)
        finished = _finished(out, config) if resume else None
        if finished is not None:
            return finished
        if resume:
            check_oracle(out / PROJECT, out)
            for note in repair_trials(out / PROJECT, out):
                print(note)
    if data is None and role != "chief":
        data = load_dataset(dataset, data_dir, seed=seed)
    if role != "worker":  # claimed only once the inputs are known to be good
        write_text_atomically(out / "search.json", json.dumps(config, indent=2))
    print(f"Searching {dataset} with the {dtype} dtype policy; results in {out}", flush=True)
    project = out / PROJECT

    def progress(trial):
        if role != "worker":
            write_results(collect_rows(project), out, max_params=max_params)
        _print_trial_line(trial, tuner_object.oracle)

    least = min_final_epochs if auto else final_epochs  # the retraining's epochs, at least
    retraining = _retraining(hypermodel, data, least) if data is not None and least else None
    trials_budget = None if budget is None else budget * (trial_share if auto else 1)
    options = {"max_epochs": epochs} if tuner == "hyperband" else {"max_trials": max_trials}
    tuner_object = TUNERS[tuner](
        hypermodel,
        objective="val_accuracy",
        directory=str(out),
        project_name=PROJECT,
        overwrite=False,
        seed=seed,
        max_consecutive_failed_trials=max_trials + 1,
        max_retries_per_trial=1 if role else 0,
        time_budget=None if budget is None else trials_budget - (time.monotonic() - started),
        on_trial_done=progress,
        # distributed workers share a remote oracle: they stop at the budget, nothing kept
        retraining=None if role else retraining,
        retraining_budget=budget - trials_budget if auto and not role else None,
        **options,
    )
    if role == "chief":
        distributed.watch_workers(tuner_object.oracle, worker_timeout)
    trial_data = None if data is None else _fraction(data, data_fraction)
    tuner_object.search(trial_data, epochs=epochs, verbose=verbose)
    if role == "worker":
        return {"role": "worker"}

    rows = collect_rows(project)
    summary = {"config": config}
    print(f"\n{format_table(rows)}\n")
    ladder = promotion_ladder(rows)
    if ladder:
        print(f"{ladder}\n")
    if tuner != "hyperband" and not tuner_object.budget_spent and len(rows) < max_trials:
        print(f"The search space holds {len(rows)} distinct configurations: all were tried.")
    if not any(r["status"] == "completed" for r in rows):
        write_results(rows, out, summary, max_params=max_params)
        reasons = sorted({r["reason"] for r in rows if r["reason"]})
        raise SearchFailed(
            f"None of the {len(rows)} trials completed, so no model was saved "
            f"({'; '.join(reasons) or 'no reason recorded'}). See {out / 'results.csv'}."
        )
    data = data or load_dataset(dataset, data_dir, seed=seed)
    left = None if budget is None else budget - (time.monotonic() - started)
    summary["best"] = _save_best(
        tuner_object, hypermodel, data, out, final_epochs, least, seed, verbose, left
    )
    write_results(rows, out, summary, max_params=max_params)
    write_text_atomically(out / FINISHED, json.dumps(config, indent=2))
    return {"trials": rows, **summary}


def _retraining(hypermodel, data: Dataset, final_epochs: int) -> Retraining:
    """The cost of retraining on all of `data` for at least `final_epochs` and testing
    with the recipe's test-time augmentation: the test's images times its views, in
    validation passes (what a trial times)."""
    views = len(tta_views(data.x_test[:1], get_recipe(hypermodel.recipe).tta))
    passes = len(data.y_test) * views / len(data.y_val) if len(data.y_val) else 0.0
    return Retraining(final_epochs, len(data.y_train), passes)


def _fraction(data: Dataset, fraction: float) -> Dataset:
    """The first `fraction` of the training set (at least one batch's worth: 128)."""
    if fraction == 1:
        return data
    return data.subset(train=max(min(128, len(data.y_train)), round(fraction * len(data.y_train))))


def _finished(out: Path, config: dict) -> dict | None:
    """The results of the search in `out` if it already ended with these settings."""
    marker = out / FINISHED
    if not marker.exists():
        return None
    recorded = read_json(marker, "the finished search's settings")
    if _differing(recorded, config, recorded.keys() | config.keys()):
        return None
    results = read_json(out / "results.json", "the search's results")
    print(
        f"{out} holds this search, finished: its best model is {out / 'best_model.keras'} "
        "(nothing retrained). Raise --max-trials or --time-budget to search on."
    )
    return results


def retrain(
    hypermodel: ResidualHyperModel,
    hyperparameters: keras_tuner.HyperParameters,
    data: Dataset,
    epochs: int,
    *,
    seed: int = 0,
    verbose: int | str = "auto",
) -> keras.Model:
    """A trial's configuration built afresh and trained on all of `data` for `epochs`
    with its recipe (the schedule spread over those epochs), as the search retrains its
    best. The model is returned untested.

    Example:
    >>> hypermodel = ResidualHyperModel((28, 28, 1), 10, width=8, blocks_per_stage=1)
    >>> hp = keras_tuner.HyperParameters()
    >>> model = retrain(hypermodel, hp, load_dataset("mnist"), 1)  # doctest: +SKIP
    """
    _checks.positive_int("epochs", epochs)
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    model = hypermodel.build(hyperparameters)
    hypermodel.fit(hyperparameters, model, data, epochs=epochs, seed=seed, verbose=verbose)
    return model


def _save_best(
    tuner_object,
    hypermodel,
    data: Dataset,
    out: Path,
    final_epochs: int | str,
    least: int,
    seed: int,
    verbose,
    seconds_left: float | None,
) -> dict:
    """Save the best trial's network: retrained for `final_epochs` ("auto": `least`) or,
    when a budget leaves `seconds_left`, for as many more epochs as fit (the best trial
    whose retraining for `least` fits), or with its own weights."""
    oracle = tuner_object.oracle
    best_trial = oracle.get_best_trials(1)[0]
    if final_epochs:
        retraining = _retraining(hypermodel, data, least)
        fitting = retraining.pick(oracle, seconds_left)
        if fitting is None:
            print(
                f"note: no trial's retraining fits the {seconds_left:.0f} s left; retraining "
                f"the best (about {retraining.seconds(best_trial):.0f} s) over the budget"
            )
        elif fitting is not best_trial:
            print(
                f"note: retraining trial {fitting.trial_id}, the best whose retraining fits "
                f"the {seconds_left:.0f} s left (trial {best_trial.trial_id} would take about "
                f"{retraining.seconds(best_trial):.0f} s)"
            )
            best_trial = fitting
        fill = ""
        if seconds_left is not None:  # the time the trials leave goes to the retraining
            final_epochs = retraining.epochs_within(best_trial, seconds_left)
            fill = f" (as many as fit in the {seconds_left:.0f} s left, at least {least})"
        hp, test = best_trial.hyperparameters, retraining.test_seconds(best_trial)
        print(
            f"Retraining trial {best_trial.trial_id}'s configuration for {final_epochs} epochs"
            f"{fill}: about {retraining.seconds(best_trial, final_epochs) - test:.0f} s, "
            f"then about {test:.0f} s to test"
        )
        model = retrain(hypermodel, hp, data, final_epochs, seed=seed, verbose=verbose)
    else:
        hp = best_trial.hyperparameters
        model = tuner_object.load_model(best_trial)
    path = out / "best_model.keras"
    model.save(path)
    tta = hypermodel.recipe_for(hp).tta  # the recipe's test-time augmentation, if any
    # The saved file is what is tested, reloaded uncompiled: testing needs no optimizer
    # state, and a recipe's frozen batch-norm scales reload trainable (Keras does not save
    # that flag), so Keras would skip the saved optimizer's variables with a warning.
    saved = keras.saving.load_model(path, safe_mode=True, compile=False)
    metrics = evaluate(saved, data, tta=tta)
    best = {
        "trial_id": best_trial.trial_id,
        "hyperparameters": hp.values,
        "params": model.count_params(),
        "val_accuracy": best_trial.score,
        "test_accuracy": metrics["accuracy"],
        "retrained_epochs": final_epochs,
        "test_tta": tta,
        "model": str(path),
    }
    with_tta = f" (tta: {tta})" if tta != "none" else ""
    print(
        f"Best: trial {best['trial_id']} ({best['params']:,} parameters) "
        f"val_accuracy {best['val_accuracy']:.4f}, test accuracy {best['test_accuracy']:.4f}"
        f"{with_tta}\nSaved {path}"
    )
    return best


def _print_trial_line(trial, oracle) -> None:
    best = oracle.get_best_trials(1)
    score = "-" if trial.score is None else f"{trial.score:.4f}"
    best_score = f"{best[0].score:.4f}" if best and best[0].score is not None else "-"
    values = " ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in trial.hyperparameters.values.items()
        if not k.startswith("tuner/")
    )
    why = "" if trial.status == "COMPLETED" else f" ({failure_reason(trial.message)})"
    print(
        f"[trial {trial.trial_id}] {trial.status.lower()}{why}  val_accuracy={score}  "
        f"best so far={best_score}  |  {values}",
        flush=True,
    )
