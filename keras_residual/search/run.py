"""Run a search end to end: validate, search (resumable), export, save the best model."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path

import keras
import keras_tuner

from keras_residual import _checks, _thirdparty
from keras_residual._files import (
    atomic_path,
    check_output_dir,
    folder_lock,
    remove_partial_files,
    write_text_atomically,
)
from keras_residual.data import DATASETS, Dataset, check_image_size, load_dataset
from keras_residual.ensembles import ensemble
from keras_residual.precision import resolve_dtype
from keras_residual.recipes import UNPLANNED_SCHEDULES, Recipe
from keras_residual.search import distributed
from keras_residual.search.budget import (
    AUTO_MARGIN,
    Retraining,
    Timing,
    scored,
    smallest_budget,
)
from keras_residual.search.config import SearchConfig
from keras_residual.search.copies import KeptCopies, StopAtDeadline, remove_copies
from keras_residual.search.incumbent import Incumbent, noise_band
from keras_residual.search.results import (
    collect_rows,
    failure_reason,
    format_table,
    halfway_correlation,
    promotion_ladder,
    write_results,
)
from keras_residual.search.space import (
    PREFERRED_EPOCHS,
    ResidualHyperModel,
    default_space_for,
    resolve_space,
)
from keras_residual.search.state import check_oracle, read_json, repair_trials
from keras_residual.search.trials import probe
from keras_residual.search.tuner import TUNERS
from keras_residual.techniques import tta_views
from keras_residual.training import RUN_FILE, epochs_trained, evaluate, get_recipe, train

PROJECT = "tuner"  # keras-tuner's project folder inside the output directory
FINISHED = "finished.json"  # written last: the search ended and its best model is saved
# A final recipe's first copy is timed on its first epochs: it goes on if their pace
# reaches this share of its epochs within the budget (the deadline then ends it, with the
# weights of its lowest training loss), else the trials' recipe retrains instead.
JUDGE_AFTER, LEAST_SHARE = 10, 0.9
SPENT = "spent.json"  # the budget's seconds the trials kept took: where --resume goes on


class SearchFailed(RuntimeError):
    """No trial of a search completed; the results say why each failed."""


IDENTITY = (
    "dataset",
    "image_size",
    "tuner",
    "epochs",
    "trial_seconds",
    "seed",
    "dtype",
    "space",
    "max_params",
    "max_mflops",
    "data_fraction",
)  # what makes two searches alike


def _differing(recorded: dict, config: dict, keys) -> list[str]:
    """The settings among `keys` that `recorded` holds otherwise than `config`; a setting
    recorded before it existed reads as None."""
    return [k for k in keys if recorded.get(k) != config.get(k)]


def _check_directory(out: Path, config: dict, resume: bool) -> None:
    """Refuse a directory that holds another search, or this one without `resume`."""
    marker = out / "search.json"
    if (out / RUN_FILE).exists():
        raise ValueError(f"`out` {out} holds a training run, not a search: choose another --out.")
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
    config: SearchConfig | str | os.PathLike = "mnist",
    out: str | os.PathLike | None = None,
    *,
    resume: bool = False,
    distributed_mode: bool = False,
    worker_timeout: float = 60.0,
    verbose: int | str = "auto",
    isolate_trials: bool = True,
    started: float | None = None,
    **settings,
) -> dict:
    """Run the search `config` describes and save the best model.

    Writes into `out`: `search.json` (the config), `results.csv`, `results.json`,
    `pareto.png`, `progress.png` (after every trial) and `best_model.keras` with its test
    accuracy (at the end). Each network is checked before it trains: over a constraint it
    is `rejected`, too slow for the budget's time left (with its retraining, should it
    win) `skipped`, each with the reason; see `SearchConfig` for the budget and the final
    retraining, and docs/search.md for the rules.

    Args:
        config: a `SearchConfig` (`SearchConfig.for_dataset(name)` gives the command
            line's defaults). A dataset name or path with `SearchConfig` fields and search
            dimensions as `settings` still works for one release, with the older defaults
            (no budget, 6 trials, no retraining).
        out: the run's folder (default `runs/search-NAME`).
        resume: continue the search in `out` (a finished one returns its results).
        distributed_mode: keras-tuner's chief/worker mode (its environment variables).
        worker_timeout: seconds before the chief counts a silent worker lost.
        verbose: Keras's `verbose` for the trials.
        isolate_trials: train the trials in a trial process (bounded memory; a crash
            fails one trial); False trains them in this process (for a debugger, say).
        started: the `time.monotonic()` the time budget counts from (None: this call).
            `keras-residual search` passes its own start, so that the budget includes
            loading TensorFlow and the toolkit.

    Returns:
        The results: `trials`, the `config` as `search.json` records it and the `best`
        model's test accuracy.

    Example:
    >>> config = SearchConfig.for_dataset("mnist", space={"width": 8}, max_trials=2)
    >>> run_search(config, "runs/quick")  # doctest: +SKIP
    """
    if not isinstance(config, SearchConfig):
        config = _legacy_config(config, settings)
    elif settings:
        raise ValueError(
            f"run_search(config) takes no other settings ({', '.join(sorted(settings))}): "
            "put them in the config (config.replace(...))."
        )
    _checks.positive("worker_timeout", worker_timeout)
    out = out if out is not None else default_out(config.dataset)
    return _search(
        config,
        Path(out),
        resume,
        distributed_mode,
        isolate_trials,
        worker_timeout=worker_timeout,
        verbose=verbose,
        started=time.monotonic() if started is None else started,
    )


def default_out(dataset: str | os.PathLike) -> str:
    """`runs/search-NAME`, NAME the dataset's name or its folder's or file's.

    Example:
    >>> default_out("mnist"), default_out("data/photos/")
    ('runs/search-mnist', 'runs/search-photos')
    """
    return f"runs/search-{os.path.splitext(os.path.basename(os.fspath(dataset).rstrip('/')))[0]}"


def _legacy_config(dataset, settings: dict) -> SearchConfig:
    """The config of the keyword form `run_search(dataset, out, **settings)`: its fields
    from `settings`, the other settings search dimensions."""
    names = {f.name for f in dataclasses.fields(SearchConfig)}
    dataset = settings.pop("dataset", dataset)  # the older signature's keyword
    fields = {k: v for k, v in settings.items() if k in names and k != "space"}
    dimensions = {k: v for k, v in settings.items() if k not in names}
    space = {**(settings.get("space") or {}), **dimensions}
    return SearchConfig(dataset=dataset, space=space, **fields)


def _search(
    config: SearchConfig,
    out: Path,
    resume: bool,
    distributed_mode: bool,
    isolate_trials: bool,
    *,
    worker_timeout: float,
    verbose: int | str,
    started: float,
) -> dict:
    auto, budget = config.final_epochs == "auto", config.budget_seconds
    role = distributed.check_environment() if distributed_mode else distributed.role()
    dtype = resolve_dtype(config.dtype)
    out = check_output_dir(out)
    data = None
    if config.dataset in DATASETS:  # shape and classes known without reading the data
        check_image_size(config.dataset, config.image_size)
        named = DATASETS[config.dataset]
        shape, classes = named["shape"], len(named["classes"])
    else:  # the user's own data: read (and checked) before anything is written
        data = load_dataset(
            config.dataset, config.data_dir, seed=config.seed, image_size=config.image_size
        )
        shape, classes = data.input_shape, data.num_classes
    space_name = default_space_for(shape, config.dataset)
    resolved = resolve_space(space_name, config.space)
    constraints = {"max_params": config.max_params, "max_mflops": config.max_mflops}
    hypermodel = ResidualHyperModel(
        shape, classes, space_name, resolved, dtype=dtype, **constraints
    )
    hypermodel.spec(keras_tuner.HyperParameters())  # every dimension declares: fail now
    # What makes two searches alike (`IDENTITY`), as resolved here, and the config itself.
    recorded = {k: getattr(config, k) for k in ("dataset", "image_size", "tuner", "epochs")}
    recorded |= {"trial_seconds": config.seconds_per_trial}
    recorded |= {"seed": config.seed, "dtype": dtype, "space": resolved}
    recorded |= {"max_trials": config.max_trials, "time_budget": budget, **constraints}
    recorded |= {"data_fraction": config.data_fraction}
    recorded["search_config"] = config.to_dict()  # what `--resume` alone continues
    recorded = json.loads(json.dumps(recorded))  # as search.json reads back: lists for tuples
    if role != "worker":
        _check_directory(out, recorded, resume)
        finished = _finished(out, recorded) if resume else None
        if finished is not None:
            return finished
        if resume:
            check_oracle(out / PROJECT, out)
    if data is None and role != "chief":
        data = load_dataset(config.dataset, config.data_dir, seed=config.seed)
    least = config.min_final_epochs if auto else config.final_epochs  # retrain at least

    def retraining_of(data):
        return _retraining(hypermodel, data, least, config.max_final_epochs) if least else None

    retraining = None if data is None else retraining_of(data)  # a chief loads data last
    first, untried = next((_preset_as_first(*b) for b in hypermodel.baselines()), None), ""
    if budget is not None and role is None and not (out / PROJECT).exists():
        first, untried = _first_trial(config, hypermodel, data, retraining)  # nothing written
    with contextlib.ExitStack() as writing:
        if role != "worker":  # claimed only once the inputs are known to be good
            writing.enter_context(folder_lock(out, "out"))  # one search writes a folder
            remove_partial_files(out)  # what a killed search left half-written
            if resume:
                for note in repair_trials(out / PROJECT, out):
                    print(note)
                kept = KeptCopies.read(out)
                spent = _spent(out) + (sum(kept.seconds) if kept else 0.0)
                started -= spent  # the budget goes on where the kept work left it
                if budget is not None and spent:
                    print(
                        f"{spent:.0f} s of the {budget:.0f} s budget went to the trials"
                        f"{' and copies' if kept and kept.count else ''} kept."
                    )
            write_text_atomically(out / "search.json", json.dumps(recorded, indent=2))
        print(
            f"Searching {config.dataset} with the {dtype} dtype policy; results in {out}",
            flush=True,
        )
        project = out / PROJECT
        fresh = not project.exists()

        def progress(trial):
            if role != "worker":
                write_results(collect_rows(project), out, max_params=config.max_params)
                spent = json.dumps({"seconds": time.monotonic() - started})
                write_text_atomically(out / SPENT, spent)
            _print_trial_line(trial, tuner_object.oracle)

        trials_budget = None if budget is None else budget * (config.trial_share if auto else 1)
        options = (
            {"max_epochs": config.epochs}
            if config.tuner == "hyperband"
            else {"max_trials": config.max_trials}
        )
        tuner_object = TUNERS[config.tuner](
            hypermodel,
            objective="val_accuracy",
            directory=str(out),
            project_name=PROJECT,
            overwrite=False,
            seed=config.seed,
            max_consecutive_failed_trials=config.max_trials + 1,
            max_retries_per_trial=1 if role else 0,
            time_budget=None if budget is None else trials_budget - (time.monotonic() - started),
            trial_seconds=config.seconds_per_trial,
            on_trial_done=progress,
            # distributed workers share a remote oracle: they stop at the budget, nothing kept
            retraining=None if role else retraining,
            retraining_budget=budget - trials_budget if auto and not role else None,
            first_values=first and first[1],
            patience=config.patience,
            validated=None if data is None else len(data.y_val),
            isolate_trials=isolate_trials,
            **options,
        )
        if fresh and role != "worker" and (tuner_object.first_values or untried):
            starts = tuner_object.first_values and f"The first trial is {first[0]}."
            print(" ".join(filter(None, (untried, starts))))
        if role == "chief":
            distributed.watch_workers(tuner_object.oracle, worker_timeout)
        trial_data = None if data is None else _fraction(data, config.data_fraction)
        tuner_object.search(trial_data, epochs=config.epochs, verbose=verbose)
        if role == "worker":
            return {"role": "worker"}

        rows = collect_rows(project)
        summary = {"config": recorded}
        print(f"\n{format_table(rows)}\n")
        ladder = promotion_ladder(rows)
        if ladder:
            print(f"{ladder}\n")
        paired, correlation = halfway_correlation(rows)
        if paired:  # how well halfway scores, which stop trials, predict the scores at the end
            summary["halfway_rank_correlation"] = {"trials": paired, "spearman": correlation}
        if correlation is not None:
            print(
                f"Scores halfway through a trial against at its end, over the {paired} trials "
                f"that trained to their end: rank correlation {correlation:.2f} (Spearman).\n"
            )
        if (
            config.tuner != "hyperband"
            and not tuner_object.stopped_early
            and len(rows) < config.max_trials
        ):
            print(f"The search space holds {len(rows)} distinct configurations: all were tried.")
        if not any(r["status"] == "completed" for r in rows):
            write_results(rows, out, summary, max_params=config.max_params)
            reasons = sorted({r["reason"] for r in rows if r["reason"]})
            raise SearchFailed(
                f"None of the {len(rows)} trials completed, so no model was saved "
                f"({'; '.join(reasons) or 'no reason recorded'}). See {out / 'results.csv'}."
            )
        if data is None:
            data = load_dataset(config.dataset, config.data_dir, seed=config.seed)
            retraining = retraining_of(data)
        left = None if budget is None else budget - (time.monotonic() - started)
        summary["best"] = _save_best(
            tuner_object, hypermodel, data, out, config, retraining, verbose, left
        )
        write_results(rows, out, summary, max_params=config.max_params)
        write_text_atomically(out / FINISHED, json.dumps(recorded, indent=2))
        remove_copies(out)  # the best model holds their average
        return {"trials": rows, **summary}


def _spent(out: Path) -> float:
    """Seconds of its budget the search in `out` spent up to its last finished trial (0
    for a new one): a resumed search counts them, not the work a kill lost."""
    path = out / SPENT
    if not path.exists():
        return 0.0
    return float(read_json(path, "the search's time spent").get("seconds", 0))


def _first_trial(
    config: SearchConfig, hypermodel, data: Dataset, retraining: Retraining | None
) -> tuple[tuple[str, dict], str]:
    """What a budgeted search's first trial trains, in words and as values of the space,
    and why the presets preferred to it are not tried: the first of
    `hypermodel.baselines()` whose first trial and retraining fit the budget, at the
    seconds per image a few of its steps take here (`probe`); a preset with one after it
    must retrain for `PREFERRED_EPOCHS`, the last for the least epochs. The last, the
    cheapest, is timed first: where it does not fit, the costlier ones cannot, and are not
    timed (fast_cifar_m's steps take 25 s to time on 2 cores). Where none fits (or the
    space holds none), the space's smallest network, timed alike: a first trial drawn at
    random would start before any network is timed, unchecked against the budget, and the
    trials after the smallest are checked against its timing. A budget too small for even
    the smallest is refused, with the smallest budget that works."""
    untried, candidates = [], hypermodel.baselines()
    last = len(candidates) - 1

    def fits(k: int) -> bool:  # candidate k's first trial and retraining, timed here
        name, values = candidates[k]
        hp = hypermodel.smallest()  # every dimension declared, the preset's values set
        hp.values.update(values)
        needed = retraining
        if retraining is not None and k < last:  # a preset with one after it
            needed = retraining.at_least(PREFERRED_EPOCHS)
        least, what = _least_budget(config, hypermodel, hp, data, needed)
        if least <= config.budget_seconds:
            return True
        untried.append(f"The {name} preset is not tried: {what}, more than the budget.")
        return False

    if candidates and fits(last):
        chosen = candidates[next((k for k in range(last) if fits(k)), last)]
        return _preset_as_first(*chosen), " ".join(untried)
    if last > 0:
        costlier = " and ".join(name for name, _ in candidates[:last])
        untried.append(f"Nor is {costlier}, costlier.")
    smallest = hypermodel.smallest()
    least, what = _least_budget(config, hypermodel, smallest, data, retraining)
    if least > config.budget_seconds:
        raise ValueError(
            f"`time_budget` {config.time_budget} is too small for this data on this machine: "
            f"{what}. Give --time-budget {math.ceil(least / 60)}m or more."
        )
    name = hypermodel.spec(smallest).name
    return (f"the space's smallest network ({name}), the one known to fit", smallest.values), (
        " ".join(untried)
    )


def _preset_as_first(name: str, values: dict) -> tuple[str, dict]:
    """A preset as a search's first trial: in words, and as values of the space."""
    return f"the {name} preset, as a point of the space", values


def _least_budget(config, hypermodel, hp, data: Dataset, retraining) -> tuple[float, str]:
    """The least budget in which `hp`'s network trains a first trial and then its shortest
    retraining, timed over a few steps here (0 where too few images make a step to time),
    and that said in words."""
    trials = _fraction(data, config.data_fraction)
    started = time.perf_counter()
    per_image = probe(hypermodel, hp, trials, None, hypermodel.recipe_for(hp))
    if per_image is None:  # nothing to plan with
        return 0.0, ""
    timing = Timing(time.perf_counter() - started, per_image)  # its start: the probe's
    epochs = 1 if config.tuner == "hyperband" else config.epochs  # Hyperband's first rung
    share = config.trial_share if config.final_epochs == "auto" else None
    least = smallest_budget(timing, len(trials.y_train), epochs, retraining, share)
    retrained = ""
    if retraining is not None:
        final = retraining.final_epochs
        retrained = f" and retrain it on all {retraining.images:,} images for {final} epoch"
        retrained += "s" * (final != 1)
    what = (
        f"to train {hypermodel.spec(hp).name} for {epochs} epoch{'s' * (epochs != 1)} as a "
        f"trial{retrained} takes at least about {least:.0f} s here (timed over a few steps)"
    )
    return least, what


def _retraining(
    hypermodel, data: Dataset, final_epochs: int, most_epochs: int | None = None
) -> Retraining:
    """The cost of retraining on all of `data` (training and validation images) for at
    least `final_epochs` (at most `most_epochs`) and testing with the recipe's test-time
    augmentation: the test's images times its views, in validation passes (what a trial
    times)."""
    views = len(tta_views(data.x_test[:1], get_recipe(hypermodel.recipe).tta))
    passes = len(data.y_test) * views / len(data.y_val) if len(data.y_val) else 0.0
    return Retraining(final_epochs, len(data.y_train) + len(data.y_val), passes, most_epochs)


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
    keys = (recorded.keys() | config.keys()) - {"search_config"}  # how it was asked: any way
    if _differing(recorded, config, keys):
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
    recipe: str | Recipe | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    seconds: float | None = None,
    initial_weights: str | os.PathLike | None = None,
) -> keras.Model:
    """A trial's configuration built afresh and trained on all of `data`'s training
    and validation splits (`Dataset.fold_validation`) for `epochs` with its recipe (the
    schedule spread over those epochs) or `recipe`, as the search retrains its best; given
    `seconds`, for that long from the call instead, the schedule planned for `epochs`
    stretched over them (`train`'s `seconds`); given `initial_weights` (a `.weights.h5`
    of the same configuration: its trial's checkpoint), from those weights, not from a
    fresh initialisation. The model is returned untested.

    Example:
    >>> hypermodel = ResidualHyperModel((28, 28, 1), 10, width=8, blocks_per_stage=1)
    >>> hp = keras_tuner.HyperParameters()
    >>> model = retrain(hypermodel, hp, load_dataset("mnist"), 1)  # doctest: +SKIP
    """
    _checks.positive_int("epochs", epochs)
    ends = None if seconds is None else time.monotonic() + _checks.positive("seconds", seconds)
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    model = hypermodel.build(hyperparameters)
    if initial_weights is not None:  # `train` keeps the whitening stem its trial set
        model.load_weights(initial_weights)
    folded = data.fold_validation()
    options = {"epochs": epochs, "seed": seed, "verbose": verbose, "callbacks": list(callbacks)}
    if ends is not None:  # what building the network took counts
        options["seconds"] = max(ends - time.monotonic(), 1e-3)
    if recipe is None:
        hypermodel.fit(hyperparameters, model, folded, **options)
    else:
        train(model, folded, recipe=recipe, **options)
    return model


def _save_best(
    tuner_object,
    hypermodel,
    data: Dataset,
    out: Path,
    config: SearchConfig,
    retraining: Retraining | None,
    verbose,
    seconds_left: float | None,
) -> dict:
    """Save the best trial's network: retrained as `_plan_retraining` plans, or with its own
    weights when `final_epochs` is 0. A retraining that leaves time trains the configuration
    again with the next seeds, up to `config.ensemble` copies in all, and saves their
    average (`ensemble`). The copies a killed search kept (`KeptCopies`) count: it goes on
    from them."""
    final_epochs, recipe = config.final_epochs, None  # None: the trials' recipe
    deadline = None if seconds_left is None else time.monotonic() + seconds_left
    # Epochs set by the time left, not a ceiling: the trials' recipe paced to it.
    paced = deadline is not None and retraining is not None and retraining.most_epochs is None
    oracle = tuner_object.oracle
    best_trial = oracle.get_best_trials(1)[0]
    kept = KeptCopies.read(out)
    kept_trial = oracle.trials.get(kept.trial_id) if kept else None
    if final_epochs and kept_trial and kept.matches(*_configuration(kept_trial)):
        best_trial, final_epochs = kept_trial, kept.epochs
        recipe = kept.recipe and get_recipe(kept.recipe).for_examples(retraining.images)
        print(
            f"Going on from the {kept.count} retrained cop{'y' if kept.count == 1 else 'ies'} "
            f"of trial {kept.trial_id}'s configuration kept ({final_epochs} epochs each)"
        )
    elif final_epochs:
        if kept:
            remove_copies(out)  # of another configuration: resumed with other settings
            kept = None
        validated = len(data.y_val) if config.final_epochs == "auto" else None
        best_trial, final_epochs = _plan_retraining(
            oracle, retraining, seconds_left, validated, tuner_object.incumbent(), paced
        )
        if config.final_recipe:  # its epochs if they fit: judged on the first of them
            recipe = get_recipe(config.final_recipe).for_examples(retraining.images)
            print(
                f"Retraining with the {config.final_recipe} recipe instead: "
                f"{config.final_recipe_epochs} epochs of batch {recipe.batch_size}, if its "
                "first epochs say that they fit the time left"
            )
            kept = KeptCopies(
                out, *_configuration(best_trial), config.final_recipe_epochs, config.final_recipe
            )
    hp = best_trial.hyperparameters
    start = None  # the trial's weights the first copy starts from, where it kept them
    if final_epochs and config.warm_start:
        start = _thirdparty.checkpoint_path(tuner_object, best_trial.trial_id)
        start = start if os.path.exists(start) else None
    if final_epochs:
        test = _test_allowance(retraining, best_trial)
        best_of = (hypermodel, hp, data)
        settings = (config.seed, verbose, config.ensemble, deadline, test, paced, start)
        members = _retrain_members(*best_of, kept, recipe, *settings) if kept else []
        if not members:  # none kept and no final recipe, or its epochs would not fit
            if recipe:
                print("They would not: retraining with the trials' recipe as planned.")
                left = deadline - time.monotonic()
                final_epochs, recipe = retraining.epochs_within(best_trial, left), None
            kept = KeptCopies(out, *_configuration(best_trial), final_epochs)
            members = _retrain_members(*best_of, kept, None, *settings)
        model = ensemble(members)
    else:
        members = []
        model = tuner_object.load_model(best_trial)
    path = out / "best_model.keras"
    with atomic_path(path) as temporary:
        model.save(temporary)
    tta = (recipe or hypermodel.recipe_for(hp)).tta  # the recipe's test-time augmentation
    # The saved file is what is tested, reloaded uncompiled: testing needs no optimizer
    # state, and a recipe's frozen batch-norm scales reload trainable (Keras does not save
    # that flag), so Keras would skip the saved optimizer's variables with a warning.
    saved = keras.saving.load_model(path, safe_mode=True, compile=False)
    metrics = evaluate(saved, data, tta=tta)
    copies = range(len(members)) if len(members) > 1 else ()  # one copy is saved as itself
    alone = [evaluate(saved.get_layer(f"member_{k}"), data, tta=tta)["accuracy"] for k in copies]
    best = {
        "trial_id": best_trial.trial_id,
        "hyperparameters": hp.values,
        "params": model.count_params(),
        "val_accuracy": best_trial.score,
        "test_accuracy": metrics["accuracy"],
        "retrained_epochs": kept.trained[0] if final_epochs else final_epochs,
        "retrain_recipe": kept.recipe if final_epochs else None,
        "warm_start": start is not None,
        "ensemble_size": max(1, len(members)),
        "member_test_accuracy": alone,
        "test_tta": tta,
        "model": str(path),
    }
    with_tta = f" (tta: {tta})" if tta != "none" else ""
    averaged = ""
    if alone:
        each = ", ".join(f"{a:.4f}" for a in alone)
        averaged = f", the average of {len(alone)} copies (each alone: {each})"
    print(
        f"Best: trial {best['trial_id']} ({best['params']:,} parameters{averaged}) "
        f"val_accuracy {best['val_accuracy']:.4f}, test accuracy {best['test_accuracy']:.4f}"
        f"{with_tta}\nSaved {path}"
    )
    return best


def _test_allowance(retraining: Retraining, trial) -> float:
    """The seconds a retrained network's test is given: twice its forecast, for saving
    and reloading the model besides."""
    return 2 * retraining.test_seconds(trial)


def _configuration(trial) -> tuple[str, dict]:
    return trial.trial_id, trial.hyperparameters.values


def _plan_retraining(
    oracle,
    retraining: Retraining,
    seconds_left: float | None,
    validated: int | None = None,
    incumbent: Incumbent | None = None,
    paced: bool = False,
):
    """The trial to retrain and for how many epochs: the best, for `retraining`'s least
    epochs or, when a budget leaves `seconds_left`, as many more as fit (then the best
    trial whose shortest retraining fits; `paced`: the epochs its schedule is planned for,
    the time left deciding how many it trains). Given the `validated` images the trials' scores
    were measured on, the trials that score within noise of the best (`within_noise`) are
    alike, and of those the one whose retraining trains the most epochs in `seconds_left`
    is retrained: the time left, not a lead the validation split cannot resolve, decides.
    Given the `incumbent` the search started from, that preset is retrained unless the
    pick's lead is one that lasts (`Incumbent.kept_over`)."""
    best_trial = oracle.get_best_trials(1)[0]
    least, most = retraining.final_epochs, retraining.most_epochs
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
    if validated and fitting is not None and seconds_left is not None:
        tied, band = within_noise(oracle, validated)
        tied = [t for t in tied if retraining.fits(t, seconds_left)] or [fitting]
        longest = max(tied, key=lambda t: retraining.epochs_within(t, seconds_left))
        if longest is not best_trial:
            print(
                f"Trials {', '.join(t.trial_id for t in tied)} score within noise of the "
                f"best ({band:.3f}: two standard errors on {validated:,} validation "
                f"images); retraining trial {longest.trial_id}'s configuration, which trains "
                "the most epochs in the time left"
            )
            best_trial = longest
    known = incumbent and oracle.trials.get(incumbent.trial_id)
    if known and best_trial is not known and retraining.fits(known, seconds_left):
        flops = best_trial.metrics.get_last_value("flops")
        why = incumbent.kept_over(best_trial.score, flops, validated)
        if why:
            print(
                f"Retraining the {incumbent.name} preset the search started from (trial "
                f"{known.trial_id}) over trial {best_trial.trial_id} ({best_trial.score:.4f}):"
                f" {why}"
            )
            best_trial = known
    final_epochs, fill = least, ""
    if seconds_left is not None:  # the time the trials leave goes to the retraining
        final_epochs = retraining.epochs_within(best_trial, seconds_left)
        ceiling = "" if most is None else f", at most {most}"
        fill = f" (as many as fit in the {seconds_left:.0f} s left, at least {least}{ceiling})"
    test = retraining.test_seconds(best_trial)
    if paced and fitting is not None:
        trains = seconds_left - _test_allowance(retraining, best_trial)
        print(
            f"Retraining trial {best_trial.trial_id}'s configuration for the "
            f"{trains:.0f} s left before its test (about {test:.0f} s), its "
            f"schedule paced to end with them: about {final_epochs} epochs as its trial "
            f"timed them (at least {least})"
        )
        return best_trial, final_epochs
    print(
        f"Retraining trial {best_trial.trial_id}'s configuration for {final_epochs} epochs"
        f"{fill}: about {retraining.seconds(best_trial, final_epochs) - test:.0f} s, "
        f"then about {test:.0f} s to test"
    )
    return best_trial, final_epochs


def within_noise(oracle, validated: int) -> tuple[list, float]:
    """The completed trials whose score (a validation accuracy on `validated` images)
    lies within two standard errors of the best's (`noise_band`), best first, and that
    band."""
    ranked = scored(oracle)
    if not ranked:
        return [], 0.0
    best = ranked[0].score
    band = noise_band(best, validated)
    return [t for t in ranked if best - t.score <= band], band


def _retrain_members(
    hypermodel,
    hp,
    data,
    kept: KeptCopies,
    recipe,
    seed,
    verbose,
    most,
    deadline,
    test_seconds,
    paced=False,
    start=None,
) -> list[keras.Model]:
    """The configuration `hp` retrained for `kept.epochs` with `recipe` (None: the trial's
    own) and seeds `seed`, `seed + 1`, ...: `most` copies, or fewer where the next (timed
    as the last, with its test) would pass `deadline`. The copies `kept` already holds
    count; each new one is kept. `paced`: a first copy with the trial's recipe trains
    until its test is all the time left, its schedule stretched over that time (`retrain`'s
    `seconds`), however far its pace is from the trial's forecast. A recipe that needs no
    planned length stops a copy where its next epoch would pass the deadline
    (`StopAtDeadline`); a first copy whose first `JUDGE_AFTER` epochs say that not even
    `LEAST_SHARE` of its epochs would fit ends there, and none is returned. A first copy
    starts from the weights in `start` (the trial's checkpoint; None: afresh): the epochs
    its trial trained are not thrown away; the copies after it start afresh, each a
    network of its own seed to average."""
    members = kept.models()
    while len(members) < most:
        if members and deadline is not None:
            needed = (1 + AUTO_MARGIN) * kept.seconds[-1] + test_seconds
            if deadline - time.monotonic() < needed:
                break
            print(
                f"Retraining it again with seed {seed + len(members)} for an average of "
                f"copies ({len(members) + 1} of at most {most}): about "
                f"{kept.seconds[-1]:.0f} s",
                flush=True,
            )
        started, stop, seconds = time.monotonic(), None, None
        if deadline is not None and recipe and recipe.schedule in UNPLANNED_SCHEDULES:
            judge = JUDGE_AFTER if not members else None  # the first copy measures the pace
            least = math.ceil(LEAST_SHARE * kept.epochs)
            stop = StopAtDeadline(deadline - test_seconds, least, judge)
        elif paced and recipe is None and not members:
            seconds = max(deadline - test_seconds - started, 1.0)
        initial = None if members else start
        if initial is not None:
            trial = Path(initial).parent.name
            print(f"The retraining starts from the weights its trial trained ({trial}).")
        model = retrain(
            hypermodel,
            hp,
            data,
            kept.epochs,
            seed=seed + len(members),
            verbose=verbose,
            recipe=recipe,
            callbacks=[stop] if stop else (),
            seconds=seconds,
            initial_weights=initial,
        )
        took = time.monotonic() - started
        if stop and stop.gave_up:
            return []  # its epochs would pass the deadline: nothing kept
        trained = stop.epochs if stop else kept.epochs
        if seconds is not None:
            trained = epochs_trained(model)
            print(f"Trained {trained} epochs in {took:.0f} s (paced to {seconds:.0f} s).")
        elif trained < kept.epochs:
            print(f"The time left ended it after {trained} of {kept.epochs} epochs.")
        kept.add(model, took, trained)
        members.append(model)
    return members


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
