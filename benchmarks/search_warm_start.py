"""Does a search's retraining gain from starting at the weights its trial trained?

In one run on one machine: a preset's network trained as a search trains its first trial
(`--trial-seconds` of equal time on the training split, validated on the rest), then
retrained on all the training images for `--seconds`, paced to end with them, as the search
retrains its pick (`keras_residual.search.retrain`): (a) from the trial's weights (the
search's default, `--warm-start`), (b) afresh (`--no-warm-start`), and (c) afresh for the
trial's time as well, what the trial's seconds are worth to a fresh run. Each is tested with
the recipe's test-time augmentation; the other processes' CPU seconds are printed per row.

Run: python benchmarks/search_warm_start.py --dataset cifar10 --seconds 600 --data-dir DIR
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(__file__))

import keras  # noqa: E402
from _report import emit, other_cpu_seconds  # noqa: E402

from keras_residual.data import load_dataset  # noqa: E402
from keras_residual.precision import resolve_dtype  # noqa: E402
from keras_residual.recipes import get_recipe  # noqa: E402
from keras_residual.search import ResidualHyperModel, default_space_for, retrain  # noqa: E402
from keras_residual.search.budget import Timing  # noqa: E402
from keras_residual.search.run import _retraining  # noqa: E402
from keras_residual.training import epochs_trained, evaluate  # noqa: E402


def preset_point(hypermodel: ResidualHyperModel, name: str):
    """The hyperparameters of preset `name` as a point of the hypermodel's space."""
    points = dict(hypermodel.baselines())
    if name not in points:
        sys.exit(f"--preset {name!r} is not a point of this space: choose from {sorted(points)}")
    hp = hypermodel.smallest()
    hp.values.update(points[name])
    return hp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="cifar10", help="a named dataset (default cifar10)")
    parser.add_argument("--preset", default="fast_cifar_s", help="a preset of its space")
    parser.add_argument("--trial-seconds", type=float, default=150.0,
                        help="the trial's equal time (default 150: a 60-minute CIFAR-10 "
                        "search's)")  # fmt: skip
    parser.add_argument("--seconds", type=float, default=600.0, help="the retraining's time")
    parser.add_argument("--data-dir", default=os.environ.get("KERAS_RESIDUAL_DATA"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not (args.trial_seconds > 0 and args.seconds > 0):
        parser.error("--trial-seconds and --seconds must be positive")
    data = load_dataset(args.dataset, args.data_dir, seed=args.seed)
    space = default_space_for(data.input_shape, args.dataset)
    hypermodel = ResidualHyperModel(
        data.input_shape, data.num_classes, space, dtype=resolve_dtype("auto")
    )
    hp = preset_point(hypermodel, args.preset)
    tta = get_recipe(hypermodel.recipe).tta
    weights = Path(tempfile.mkdtemp()) / "trial.weights.h5"

    def trial():
        keras.utils.set_random_seed(args.seed)
        model = hypermodel.build(hp)
        record = hypermodel.fit(hp, model, data, trial_seconds=args.trial_seconds, verbose=2)
        model.save_weights(weights)
        return record

    started = time.monotonic()
    record, other = other_cpu_seconds(trial)
    took = time.monotonic() - started
    print(f"Trial: val_accuracy {record['val_accuracy']:.4f} in {took:.0f} s", flush=True)
    rows = [
        {
            "start": "trial (training split)",
            "seconds": round(took, 1),
            "epochs": record["next_epoch"],
            "images_per_epoch": record.get("train_examples"),
            "val_accuracy": round(record["val_accuracy"], 4),
            "test_accuracy": None,
            "other_cpu_s": round(other, 1),
        }
    ]
    runs = (
        ("from the trial's weights", args.seconds, weights),
        ("afresh", args.seconds, None),
        ("afresh, the trial's time added", args.seconds + args.trial_seconds, None),
    )
    timing = Timing.from_record(record)
    retraining = _retraining(hypermodel, data, 1)
    for start, seconds, initial in runs:  # planned as the search plans its retraining
        epochs = retraining.epochs_at(timing, seconds)

        def retrained(seconds=seconds, initial=initial, epochs=epochs):
            return retrain(hypermodel, hp, data, epochs, seed=args.seed, verbose=2,
                           seconds=seconds, initial_weights=initial)  # fmt: skip

        model, other = other_cpu_seconds(retrained)
        accuracy = evaluate(model, data, tta=tta)["accuracy"]
        row = {
            "start": start,
            "seconds": seconds,
            "epochs": epochs_trained(model),
            "images_per_epoch": retraining.images,
            "val_accuracy": None,
            "test_accuracy": round(accuracy, 4),
            "other_cpu_s": round(other, 1),
        }
        print(row, flush=True)
        rows.append(row)
    emit(
        f"Search retraining from its trial's weights: {args.dataset}, {args.preset}, "
        f"{args.trial_seconds:.0f} s trial, {args.seconds:.0f} s retraining",
        rows,
        seed=args.seed,
        dtype=hypermodel.dtype,
        tta=tta,
    )


if __name__ == "__main__":
    main()
