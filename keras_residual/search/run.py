"""Run a search end to end: validate, search (resumable), export, save the best model."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import keras
import keras_tuner

from keras_residual import _checks
from keras_residual._files import check_output_dir, write_text_atomically
from keras_residual.data import DATASETS, Dataset, load_dataset
from keras_residual.precision import resolve_dtype
from keras_residual.search import distributed
from keras_residual.search.results import collect_rows, format_table, write_results
from keras_residual.search.space import ResidualHyperModel, default_space_for, resolve_space
from keras_residual.search.state import check_oracle, read_json, repair_trials
from keras_residual.search.tuner import TUNERS
from keras_residual.training import evaluate

PROJECT = "tuner"  # keras-tuner's project folder inside the output directory
FINISHED = "finished.json"  # written last: the search ended and its best model is saved


class SearchFailed(RuntimeError):
    """No trial of a search completed; the results say why each failed."""


IDENTITY = (
    "dataset",
    "tuner",
    "epochs",
    "seed",
    "dtype",
    "space",
    "max_params",
    "max_mflops",
)  # what makes two searches alike


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


def _check_directory(out: Path, config: dict, resume: bool) -> None:
    """Refuse a directory that holds another search, or this one without `resume`."""
    marker = out / "search.json"
    if marker.exists():
        way_out = (
            f" Its trials are intact: `keras-residual report {out}` lists them. To search on, "
            "start a new --out."
        )
        previous = read_json(marker, "the search's settings", way_out)
        differs = [k for k in IDENTITY if k != "space" and previous.get(k) != config[k]]
        space = previous.get("space", {})
        differs += [f"{k} dimension" for k in config["space"] if space.get(k) != config["space"][k]]
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
    final_epochs: int = 0,
    resume: bool = False,
    distributed_mode: bool = False,
    worker_timeout: float = 60.0,
    data_dir: str | os.PathLike | None = None,
    image_size: int | tuple[int, int] | None = None,
    max_params: int | None = None,
    max_mflops: float | None = None,
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
    epochs; otherwise the best trial's own weights are kept. `dtype` is the trials'
    dtype policy, `"auto"` (resolved once, here, for this machine), None (Keras's global
    policy) or a policy name. `max_params` and `max_mflops` reject larger networks before
    they train (each such trial is recorded failed, with the reason, and uses a trial).
    Returns the results.

    Example:
    >>> run_search("mnist", "runs/quick", max_trials=2, width=8)  # doctest: +SKIP
    """
    dataset = str(dataset)
    _checks.choice("tuner", tuner, TUNERS)
    _checks.positive_int("max_trials", max_trials)
    _checks.positive_int("epochs", epochs)
    _checks.non_negative_int("final_epochs", final_epochs)
    _checks.positive("worker_timeout", worker_timeout)
    budget = parse_duration(time_budget)
    role = distributed.check_environment() if distributed_mode else distributed.role()
    dtype = resolve_dtype(dtype)
    out = check_output_dir(out)
    data = None
    if dataset in DATASETS:  # shape and classes known without reading the data
        shape, classes = DATASETS[dataset]["shape"], len(DATASETS[dataset]["classes"])
        space_name = dataset
    else:  # the user's own data: read (and checked) before anything is written
        data = load_dataset(dataset, data_dir, seed=seed, image_size=image_size)
        shape, classes = data.input_shape, data.num_classes
        space_name = default_space_for(shape)
    resolved = resolve_space(space_name, space, **dimensions)
    constraints = {"max_params": max_params, "max_mflops": max_mflops}
    hypermodel = ResidualHyperModel(
        shape, classes, space_name, resolved, dtype=dtype, **constraints
    )
    hypermodel.spec(keras_tuner.HyperParameters())  # every dimension declares: fail now
    config = {"dataset": dataset, "tuner": tuner, "epochs": epochs, "seed": seed}
    config |= {"dtype": dtype, "space": resolved, "max_trials": max_trials}
    config |= {"time_budget": budget, **constraints}
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
        time_budget=budget,
        on_trial_done=progress,
        **options,
    )
    if role == "chief":
        distributed.watch_workers(tuner_object.oracle, worker_timeout)
    tuner_object.search(data, epochs=epochs, verbose=verbose)
    if role == "worker":
        return {"role": "worker"}

    rows = collect_rows(project)
    summary = {"config": config}
    print(f"\n{format_table(rows)}\n")
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
    summary["best"] = _save_best(tuner_object, hypermodel, data, out, final_epochs, seed, verbose)
    write_results(rows, out, summary, max_params=max_params)
    write_text_atomically(out / FINISHED, json.dumps(config, indent=2))
    return {"trials": rows, **summary}


def _finished(out: Path, config: dict) -> dict | None:
    """The results of the search in `out` if it already ended with these settings."""
    marker = out / FINISHED
    same = json.loads(json.dumps(config))  # as it reads back: lists for tuples
    if not marker.exists() or read_json(marker, "the finished search's settings") != same:
        return None
    results = read_json(out / "results.json", "the search's results")
    print(
        f"{out} holds this search, finished: its best model is {out / 'best_model.keras'} "
        "(nothing retrained). Raise --max-trials or --time-budget to search on."
    )
    return results


def _save_best(
    tuner_object, hypermodel, data: Dataset, out: Path, final_epochs, seed, verbose
) -> dict:
    best_trial = tuner_object.oracle.get_best_trials(1)[0]
    hp = best_trial.hyperparameters
    if final_epochs:
        keras.backend.clear_session()
        keras.utils.set_random_seed(seed)
        model = hypermodel.build(hp)
        print(f"Retraining trial {best_trial.trial_id}'s configuration for {final_epochs} epochs")
        hypermodel.fit(hp, model, data, epochs=final_epochs, seed=seed, verbose=verbose)
    else:
        model = tuner_object.load_model(best_trial)
    path = out / "best_model.keras"
    model.save(path)
    metrics = evaluate(keras.saving.load_model(path, safe_mode=True), data)
    best = {
        "trial_id": best_trial.trial_id,
        "hyperparameters": hp.values,
        "params": model.count_params(),
        "val_accuracy": best_trial.score,
        "test_accuracy": metrics["accuracy"],
        "retrained_epochs": final_epochs,
        "model": str(path),
    }
    print(
        f"Best: trial {best['trial_id']} ({best['params']:,} parameters) "
        f"val_accuracy {best['val_accuracy']:.4f}, test accuracy {best['test_accuracy']:.4f}\n"
        f"Saved {path}"
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
    print(
        f"[trial {trial.trial_id}] {trial.status.lower()}  val_accuracy={score}  "
        f"best so far={best_score}  |  {values}",
        flush=True,
    )
