"""Do a search's trial scores rank its configurations as retraining them does?

Reads a finished search's directory (`keras-residual search ... --out DIR`), retrains every
completed trial's configuration from scratch on all the training data for `--epochs`
(default: as many as the search retrained its best for) with the trial's recipe, exactly as
the search retrains its best (`keras_residual.search.retrain`), or with `--seconds` for the
epochs of it that fit that long (planned from its trial's timing, as a search with
`--final-epochs auto` plans its best's: equal time, not equal epochs), tests each with the recipe's
test-time augmentation, and reports the rank correlation (Spearman's rho, Kendall's tau-b)
between the trial scores (validation accuracy after the trials' short training) and the
retrained test accuracies, and where the search's pick ends up among them.

A row is printed as each configuration finishes, so a run stopped early still says
something. `--quick` runs a tiny search on random data first and checks the plumbing only.

Run: KERAS_RESIDUAL_DATA=... python benchmarks/search_rank_correlation.py runs/cifar10 --epochs 3
     python benchmarks/search_rank_correlation.py runs/photos --seconds 300
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(__file__))

import keras_tuner  # noqa: E402
import numpy as np  # noqa: E402
from _report import cpu_flags, emit  # noqa: E402

import keras_residual as kr  # noqa: E402
from keras_residual.search import ResidualHyperModel, default_space_for, retrain, run_search  # noqa: E402
from keras_residual.search.results import spearman, varying_names  # noqa: E402
from keras_residual.search.run import PROJECT, _retraining  # noqa: E402
from keras_residual.search.state import read_json  # noqa: E402


def kendall_tau_b(a, b) -> float:
    """Kendall's tau-b: (concordant - discordant pairs), corrected for ties."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    upper = np.triu_indices(len(a), k=1)
    da = np.sign(a[:, None] - a[None, :])[upper]
    db = np.sign(b[:, None] - b[None, :])[upper]
    return float((da * db).sum() / np.sqrt((da != 0).sum() * (db != 0).sum()))


def searched(out: Path, data_dir: str | None):
    """The search's settings, data, hypermodel and completed trials (best score first)."""
    config = read_json(out / "search.json", "the search's settings")
    size = config.get("image_size")  # a folder of images is resized as the search resized it
    data = kr.load_dataset(config["dataset"], data_dir, seed=config["seed"], image_size=size)
    space = default_space_for(data.input_shape, config["dataset"])
    hypermodel = ResidualHyperModel(
        data.input_shape, data.num_classes, space, config["space"], dtype=config["dtype"]
    )
    trials = [
        keras_tuner.engine.trial.Trial.load(path)
        for path in sorted((out / PROJECT).glob("trial_*/trial.json"))
    ]
    completed = [t for t in trials if t.status == "COMPLETED" and t.score is not None]
    return config, data, hypermodel, sorted(completed, key=lambda t: -t.score)


def quick_search(directory: Path) -> Path:
    """A three-trial search on random 16x16 images: something to retrain in seconds."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (256, 16, 16, 3), dtype=np.uint8)
    y = rng.integers(0, 3, 256)
    np.savez(directory / "random.npz", x_train=x, y_train=y, x_test=x[:64], y_test=y[:64])
    out = directory / "search"
    run_search(
        directory / "random.npz", out, max_trials=3, width=[4, 8], blocks_per_stage=[1, 2],
        dtype="float32", verbose=0,
    )  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("search_dir", nargs="?", help="a finished search's --out directory")
    parser.add_argument("--epochs", type=int, help="default: the search's own retraining's")
    parser.add_argument("--seconds", type=float,
                        help="retrain each for the epochs that fit this long, as planned from "
                        "its trial's timing (not with --epochs)")  # fmt: skip
    parser.add_argument("--data-dir", default=os.environ.get("KERAS_RESIDUAL_DATA"))
    parser.add_argument("--json", help="also write the JSON here")
    parser.add_argument("--quick", action="store_true", help="a tiny search on random data")
    args = parser.parse_args()
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be a positive integer, got {args.epochs}")
    if args.seconds is not None and (args.epochs is not None or not args.seconds > 0):
        parser.error(f"--seconds must be positive, and not with --epochs; got {args.seconds}")
    if args.quick:
        out = quick_search(Path(tempfile.mkdtemp()))
    elif args.search_dir and (Path(args.search_dir) / "results.json").exists():
        out = Path(args.search_dir)
    else:
        parser.error(f"{args.search_dir!r} holds no finished search (no results.json)")
    best = read_json(out / "results.json", "the search's results").get("best", {})
    epochs = args.epochs or best.get("retrained_epochs") or 1
    config, data, hypermodel, trials = searched(out, args.data_dir)
    if len(trials) < 3:
        sys.exit(f"{out} has {len(trials)} completed trials: a rank correlation needs 3")
    retraining = _retraining(hypermodel, data, 1)
    each = (
        f"for the epochs that fit {args.seconds:.0f} s" if args.seconds else f"for {epochs} epochs"
    )
    print(f"Retraining {len(trials)} configurations of {out} {each} each", flush=True)
    values = [t.hyperparameters.values for t in trials]
    names, rows = varying_names(values, list(values[0])), []
    for trial in trials:
        start = time.perf_counter()
        hp = trial.hyperparameters
        if args.seconds:
            epochs = retraining.epochs_within(trial, args.seconds)
        model = retrain(hypermodel, hp, data, epochs, seed=config["seed"], verbose=0)
        tta = hypermodel.recipe_for(hp).tta
        row = {"trial": trial.trial_id, **{n: hp.values.get(n) for n in names}}
        row |= {"params": model.count_params(), "trial_score": round(trial.score, 4)}
        row["epochs"] = epochs
        row["retrained_test"] = round(kr.evaluate(model, data, tta=tta)["accuracy"], 4)
        row["seconds"] = round(time.perf_counter() - start)
        print(json.dumps(row), flush=True)
        rows.append(row)
    scores, finals = [r["trial_score"] for r in rows], [r["retrained_test"] for r in rows]
    # the configuration the search retrained (else the best trial score)
    pick = next((r for r in rows if r["trial"] == best.get("trial_id")), rows[0])
    result = {
        "search_dir": str(out),
        "dataset": config["dataset"],
        "trial_epochs": config["epochs"],
        "retrained": f"{args.seconds:.0f} s each" if args.seconds else f"{epochs} epochs",
        "configurations": len(rows),
        "spearman": round(spearman(scores, finals), 3),
        "kendall_tau_b": round(kendall_tau_b(scores, finals), 3),
        "pick_rank_after_retraining": int(sum(f > pick["retrained_test"] for f in finals)) + 1,
        "pick_gap_to_best": round(max(finals) - pick["retrained_test"], 4),
        "test_tta": tta,  # the space's recipe: the same for every trial
        "cpu_flags": cpu_flags(),
    }
    emit("Trial score vs retrained accuracy", rows, **result)
    if args.json:
        Path(args.json).write_text(json.dumps({**result, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
