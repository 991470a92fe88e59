"""Same budget, same data, one run: this toolkit's default search vs keras-tuner's HyperResNet.

The toolkit searches as its command line does; HyperResNet runs under keras-tuner's
`RandomSearch` (one epoch per trial) and `Hyperband` (`--hyperband-epochs`, factor 3), each
with the same wall-clock budget (`--hyperresnet-tuners` picks). HyperResNet
launches trials for the whole budget (or for all the time the toolkit took, if that was longer),
a trial still training when the budget ends stops there (and is validated on what it learnt;
keras-tuner counts it completed, and `trials_cut` counts it again),
and its best trial's weights are scored on the real test set. This toolkit launches trials for
`--trial-share` of the budget and spends the rest retraining the best configuration for as
many epochs as fit (`--final-epochs auto`), or keeps the time a number of final epochs
takes and fills the rest with trials, as its command line does.

Run: KERAS_RESIDUAL_DATA=... python benchmarks/search_vs_hyperresnet.py --dataset mnist --budget 10m
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(__file__))

import keras  # noqa: E402
import keras_tuner  # noqa: E402
from _report import emit  # noqa: E402

import keras_residual as kr  # noqa: E402
from keras_residual import _checks  # noqa: E402
from keras_residual.search import parse_duration, run_search  # noqa: E402
from keras_residual_cli import epochs_or_auto  # noqa: E402


def budgeted(tuner_class: type) -> type:
    """`tuner_class` (a keras-tuner tuner) under a wall-clock budget of `budget` s: once it is
    spent, it launches no trial and stops the training of the trial still training (that trial
    is validated on what it learnt and counted completed) and keeps that trial's id in `cut`."""

    class Budgeted(tuner_class):
        def __init__(self, *args, budget: float, **kwargs):
            super().__init__(*args, **kwargs)
            self.deadline, self.cut = time.monotonic() + budget, set()

        def pre_create_trial(self):
            if time.monotonic() >= self.deadline:
                raise StopIteration

        def on_batch_end(self, trial, model, batch, logs=None):
            if time.monotonic() >= self.deadline:
                model.stop_training = True
                self.cut.add(trial.trial_id)
            super().on_batch_end(trial, model, batch, logs)

    return Budgeted


HYPERRESNET_TUNERS = {
    "random": (keras_tuner.RandomSearch, {"max_trials": 1000}),
    "hyperband": (keras_tuner.Hyperband, {"factor": 3}),
}


def hyperresnet(
    data: kr.Dataset, budget: float, directory: str, tuner: str, max_epochs: int
) -> dict:
    def arrays(split):
        x = data.normalize(getattr(data, f"x_{split}"))
        return x, keras.utils.to_categorical(getattr(data, f"y_{split}"), data.num_classes)

    (x, y), validation = arrays("train"), arrays("val")
    tuner_class, options = HYPERRESNET_TUNERS[tuner]
    if tuner == "hyperband":
        options = {**options, "max_epochs": max_epochs}
    tuner = budgeted(tuner_class)(
        keras_tuner.applications.HyperResNet(input_shape=data.input_shape, classes=10),
        objective="val_accuracy",
        **options,
        max_consecutive_failed_trials=1000,
        directory=directory,
        budget=budget,
        seed=1,  # keras-tuner draws a random seed for 0
    )
    with contextlib.suppress(StopIteration):
        tuner.search(x, y, validation_data=validation, epochs=1, verbose=2)
    trials = tuner.oracle.trials.values()
    completed = [t for t in trials if t.status == "COMPLETED"]
    row = {"trials_completed": len(completed), "trials_failed": len(trials) - len(completed)}
    row["trials_cut"] = sum(t.trial_id in tuner.cut for t in completed)
    if completed:
        best = tuner.get_best_models(1)[0]
        best.compile(loss="categorical_crossentropy", metrics=["accuracy"])
        test = best.evaluate(*arrays("test"), verbose=0, return_dict=True)
        row |= {
            "best_val_accuracy": round(tuner.oracle.get_best_trials(1)[0].score, 4),
            "test_accuracy": round(test["accuracy"], 4),
            "params": best.count_params(),
        }
    return row


def toolkit(
    dataset: str, budget: float, directory: str, share: float, final: int | str, dtype: str
) -> dict:
    result = run_search(
        dataset,
        directory,
        max_trials=1000,
        time_budget=budget,
        final_epochs=final,
        trial_share=share,
        dtype=dtype,
        verbose=2,
    )
    rows = result["trials"]
    best = result.get("best", {})
    return {
        "trials_completed": sum(r["status"] == "completed" for r in rows),
        "trials_cut": 0,  # it stops no trial: one forecast to end past the budget never starts
        "trials_failed": sum(r["status"] != "completed" for r in rows),
        "best_val_accuracy": round(best.get("val_accuracy", 0), 4),
        "test_accuracy": round(best.get("test_accuracy", 0), 4),
        "params": best.get("params"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", choices=("mnist", "cifar10"), default="mnist")
    parser.add_argument("--budget", default="10m")
    parser.add_argument("--trial-share", type=float, default=0.5)
    parser.add_argument("--final-epochs", type=epochs_or_auto, default="auto")
    parser.add_argument("--dtype", default="auto", help="dtype policy of both searches")
    parser.add_argument("--hyperresnet-tuners", default="random,hyperband")
    parser.add_argument("--hyperband-epochs", type=int, default=3, help="Hyperband's max_epochs")
    args = parser.parse_args()
    budget = parse_duration(args.budget)
    dtype = kr.resolve_dtype(args.dtype)
    print(f"dtype policy: {dtype}", flush=True)
    data = kr.load_dataset(args.dataset)
    rows = []
    searches = [
        (
            "keras_residual",
            lambda d: toolkit(args.dataset, budget, d, args.trial_share, args.final_epochs, dtype),
        )
    ]
    for tuner in args.hyperresnet_tuners.split(","):
        _checks.choice("--hyperresnet-tuners", tuner, HYPERRESNET_TUNERS)
        # HyperResNet gets the budget, or all the time the toolkit took if that was more.
        searches.append(
            (
                f"HyperResNet + {HYPERRESNET_TUNERS[tuner][0].__name__}",
                lambda d, t=tuner: hyperresnet(
                    data, max(budget, rows[0]["wall_s"]), d, t, args.hyperband_epochs
                ),
            )
        )
    for name, run in searches:
        keras.config.set_dtype_policy(dtype)  # HyperResNet's layers follow the global policy
        directory = tempfile.mkdtemp(prefix="search-")
        keras.backend.clear_session()
        start = time.monotonic()
        row = {"search": name, **run(directory)}
        row["wall_s"] = round(time.monotonic() - start)
        rows.append(row)
        shutil.rmtree(directory, ignore_errors=True)
    columns = ("search", "trials_completed", "trials_cut", "trials_failed", "best_val_accuracy")
    columns += ("test_accuracy", "params", "wall_s")
    rows = [{c: row.get(c, "-") for c in columns} for row in rows]
    emit(f"search on {args.dataset}, budget {args.budget}", rows, dataset=args.dataset, dtype=dtype)


if __name__ == "__main__":
    main()
