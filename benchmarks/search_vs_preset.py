"""Is a search worth its time? In one run on one machine, for each dataset: (a)
`keras-residual search --dataset D --time-budget T` with its defaults, and (b) the preset
the search starts from (the best known network for such data: `fast_mnist` on MNIST,
`fast_cifar_m` on CIFAR-10 and on images of your own; or the best of `--presets`) trained
with `keras-residual train` and its recipe for the same T, on all the training images: its
schedule planned for the epochs that a few timed steps forecast and paced to end with T
less its test's estimate (`--time-budget`), as the search paces its retraining. Both
with the same seed, both tested on the same test split with their recipe's test-time
augmentation, each as a user runs it (a command line, its wall time measured around it).

    python benchmarks/search_vs_preset.py --dataset mnist --budget 5m --data-dir DIR
    python benchmarks/search_vs_preset.py --dataset folder --budget 10m --data-dir DIR
    python benchmarks/search_vs_preset.py --dataset cifar10 --budget 60m --data-dir DIR

`folder` is a dataset no preset was tuned on, read through the same `--dataset FOLDER` path
as a user's images: the first five classes of CIFAR-10 (all 30,000 of their images), in
grayscale at 48x48, written once as PNG class folders under `--folder` (the folder loader
holds 10% out for testing).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(__file__))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _report import busy_seconds, children_seconds, cpu_flags, emit  # noqa: E402

import keras_residual as kr  # noqa: E402
from keras_residual.precision import resolve_dtype  # noqa: E402
from keras_residual.search import (  # noqa: E402
    ResidualHyperModel,
    default_space_for,
    parse_duration,
)
from keras_residual.techniques import tta_views  # noqa: E402

FOLDER_CLASSES = 5  # CIFAR-10's first five: airplane, automobile, bird, cat, deer
FOLDER_SIZE = 48
TIMED_STEPS = 3  # steps timed after the first (tracing) to plan the preset's epochs


def write_folder(root: Path, data_dir: str | None) -> Path:
    """The `folder` dataset under `root` (made once): PNG class folders of CIFAR-10's first
    `FOLDER_CLASSES` classes, every image of the train and test splits, in grayscale at
    `FOLDER_SIZE` x `FOLDER_SIZE`."""
    done = root / "complete"
    if done.exists():
        return root
    data = kr.load_dataset("cifar10", data_dir, validation_split=0.0)
    images = np.concatenate([data.x_train, data.x_test])
    labels = np.concatenate([data.y_train, data.y_test])
    for label in range(FOLDER_CLASSES):
        folder = root / data.class_names[label]
        folder.mkdir(parents=True, exist_ok=True)
        chosen = images[labels == label]
        gray = tf.image.rgb_to_grayscale(tf.image.resize(chosen, (FOLDER_SIZE, FOLDER_SIZE)))
        for i, image in enumerate(tf.cast(tf.round(gray), tf.uint8)):
            tf.io.write_file(str(folder / f"{i:05d}.png"), tf.io.encode_png(image))
    done.touch()
    return root


class _Steady(keras.callbacks.Callback):
    """Seconds of the training steps after the first."""

    def __init__(self):
        super().__init__()
        self.seconds, self.steps, self._began = 0.0, -1, 0.0

    def on_train_batch_begin(self, batch, logs=None):
        self._began = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if self.steps > 0:
            self.seconds += time.perf_counter() - self._began


def preset_epochs(preset: str, data: kr.Dataset, budget: float, started: float) -> dict:
    """The epochs of `preset` on all of `data`'s training images that `budget` holds here,
    and its test's seconds: `TIMED_STEPS` steps timed after the first give the seconds an
    image; the start-up is what loading and this timing took (since `started`), the test a
    forward pass (a third of a training step) over the test images and the recipe's
    views."""
    recipe = kr.get_recipe(kr.default_recipe(preset))
    spec = kr.get_spec(preset).replace(input_shape=data.input_shape, num_classes=data.num_classes)
    model = kr.build_network(spec, dtype=resolve_dtype("auto"))
    count = (TIMED_STEPS + 1) * recipe.batch_size
    head = data.subset(train=count)  # no validation split: nothing but the steps
    steady = _Steady()
    kr.train(model, head, epochs=1, recipe=recipe, verbose=0, callbacks=[steady])
    per_image = steady.seconds / (steady.steps * recipe.batch_size)
    views = len(tta_views(data.x_test[:1], recipe.tta))
    test = per_image / 3 * len(data.y_test) * views
    start = time.monotonic() - started - steady.seconds
    epoch = per_image * len(data.y_train)
    epochs = max(1, round((budget - start - test) / epoch))
    return {"epochs": epochs, "per_image": per_image, "test_s": test}


def run(command: list[str], kill_after: float | None = None) -> tuple[str, float, float]:
    """`command`'s output, wall seconds and the CPU seconds other processes used meanwhile;
    with `kill_after`, its process group is killed (SIGKILL) after that many seconds."""
    print("$", " ".join(command), flush=True)
    busy, own = busy_seconds(), children_seconds()
    began = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)  # fmt: skip
    try:
        stdout, stderr = process.communicate(timeout=kill_after)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the search and its trial process
        stdout, stderr = process.communicate()
        print(f"killed after {kill_after:.0f} s", flush=True)
    wall = time.monotonic() - began
    own = children_seconds() - own
    print(stdout[-3000:], flush=True)
    if process.returncode and kill_after is None:
        raise SystemExit(f"{command[3]} failed:\n{stderr[-3000:]}")
    return stdout, wall, max(0.0, busy_seconds() - busy - own)


def killed_and_resumed(command: list[str], out: Path, seconds: float, seed: int) -> dict:
    """The search `command` (writing to `out`) killed with SIGKILL at a random point of the
    `seconds` the same search took uninterrupted, then resumed with `--resume` alone: its
    test accuracy, and the trials it had finished that the resumed search lost or
    repeated. A search that ends before its kill is an error: it tested nothing."""
    kill_at = random.Random(seed).uniform(0.1, 0.9) * seconds
    _, killed_wall, _ = run(command, kill_after=kill_at)
    if killed_wall < kill_at:
        raise SystemExit(f"The search ended after {killed_wall:.0f} s, before its kill at "
                         f"{kill_at:.0f} s: nothing was killed.")  # fmt: skip
    results = out / "results.json"
    kept = json.loads(results.read_text())["trials"] if results.exists() else []
    kept = {t["trial_id"]: t for t in kept if t["status"] == "completed"}
    _, resumed_wall, _ = run([*command[:3], "search", "--out", str(out), "--resume"])
    final = json.loads(results.read_text())
    after = {t["trial_id"]: t for t in final["trials"]}
    lost = [i for i, t in kept.items() if after.get(i, {}).get("val_accuracy") != t["val_accuracy"]]
    names = set(final["config"]["space"])  # a trial's point: its dimensions' values
    points = [json.dumps({k: v for k, v in t.items() if k in names}, sort_keys=True)
              for t in final["trials"] if t["status"] == "completed"]  # fmt: skip
    return {
        "killed_at_s": round(kill_at, 1),
        "resumed_test_accuracy": round(final["best"]["test_accuracy"], 4),
        "killed_plus_resumed_wall_s": round(killed_wall + resumed_wall, 1),
        "trials_kept_at_kill": len(kept),
        "trials_lost": len(lost),
        "trials_repeated": len(points) - len(set(points)),
    }


def compare(
    dataset: str,
    budget: str,
    data_dir: str | None,
    seed: int,
    work: Path,
    presets: list[str],
    kill: bool = False,
) -> dict:
    """One row: the search and the best of `presets` (default: the one the search starts
    from) for the same time on `dataset`; with `kill`, the search again, killed and resumed
    (`killed_and_resumed`)."""
    seconds = parse_duration(budget)
    cli = [sys.executable, "-m", "keras_residual"]
    where = ["--dataset", dataset, "--seed", str(seed)] + (
        ["--data-dir", data_dir] if data_dir else []
    )
    out = work / "search"
    search = [*cli, "search", *where, "--time-budget", budget]
    _, search_wall, search_other = run([*search, "--out", str(out)])
    results = json.loads((out / "results.json").read_text())
    best = results["best"]
    best_spec = next(t["spec"] for t in results["trials"] if t["trial_id"] == best["trial_id"])
    row = {
        "dataset": dataset if dataset in kr.data.DATASETS else "folder",
        "budget_s": seconds,
        "search_test_accuracy": round(best["test_accuracy"], 4),
        "search_wall_s": round(search_wall, 1),
        "search_best": f"{best_spec['name']}, {best['retrained_epochs']} epochs",
        "search_trials": len(results["trials"]),
    }
    if kill:
        row |= killed_and_resumed([*search, "--out", str(work / "killed")], work / "killed",
                                  search_wall, seed)  # fmt: skip
    started = time.monotonic()
    data = kr.load_dataset(dataset, data_dir, validation_split=0.0, seed=seed)
    loading = time.monotonic() - started  # each preset's run loads it again: its start-up
    if not presets:  # the search's first trial: the best known network for such data
        space = default_space_for(data.input_shape, dataset)
        presets = [ResidualHyperModel(data.input_shape, data.num_classes, space).baselines()[0][0]]
    trained = {}
    for preset in presets:
        plan = preset_epochs(preset, data, seconds, time.monotonic() - loading)
        keras.backend.clear_session()
        printed, wall, other = run(
            [*cli, "train", "--model", preset, *where, "--epochs", str(plan["epochs"]),
             "--time-budget", f"{seconds - plan['test_s']:.1f}s", "--validation-split", "0",
             "--out", str(work / preset)]
        )  # fmt: skip
        accuracy = float(re.search(r"test accuracy: ([0-9.]+)", printed).group(1))
        epochs = float(re.search(r"Trained ([0-9.]+) epochs", printed).group(1))
        trained[preset] = {"epochs": epochs, "accuracy": accuracy, "wall": wall}
        trained[preset]["planned"] = plan["epochs"]
        trained[preset]["other"] = other
    preset = max(trained, key=lambda name: trained[name]["accuracy"])
    chosen = trained[preset]
    return row | {
        "preset": preset,
        "preset_epochs": chosen["epochs"],
        "preset_planned_epochs": chosen["planned"],
        "preset_test_accuracy": round(chosen["accuracy"], 4),
        "preset_wall_s": round(chosen["wall"], 1),
        "search_minus_preset_points": round(100 * (best["test_accuracy"] - chosen["accuracy"]), 2),
        "presets_tried": ", ".join(
            f"{name} {t['epochs']} epochs {t['accuracy']:.2%}" for name, t in trained.items()
        ),
        "other_cpu_s": ", ".join(
            f"{other:.1f}" for other in (search_other, *(t["other"] for t in trained.values()))
        ),
        "cpu_flags": " ".join(cpu_flags()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist", help="mnist, cifar10 or folder")
    parser.add_argument("--budget", default="5m", help="the time budget: 90s, 5m, 1h")
    parser.add_argument("--data-dir", default=os.environ.get("KERAS_RESIDUAL_DATA"))
    parser.add_argument("--folder", default="/tmp/keras_residual_folder5_gray48",
                        help="where the folder dataset is written (once)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--presets", default="",
                        help="presets to train for the same time, the best of them compared "
                        "(default: the one the search starts from)")  # fmt: skip
    parser.add_argument("--kill", action="store_true",
                        help="search again, kill -9 at a random point and --resume")  # fmt: skip
    args = parser.parse_args()
    dataset = args.dataset
    if dataset == "folder":
        dataset = str(write_folder(Path(args.folder), args.data_dir))
    with tempfile.TemporaryDirectory() as work:
        presets = [name for name in args.presets.split(",") if name]
        row = compare(dataset, args.budget, args.data_dir, args.seed, Path(work), presets,
                      args.kill)  # fmt: skip
    emit(
        f"Search vs preset for the same time: {row['dataset']}, {args.budget}",
        [row],
        seed=args.seed,
        folder=None if args.dataset != "folder" else (
            f"CIFAR-10's first {FOLDER_CLASSES} classes, grayscale {FOLDER_SIZE}x{FOLDER_SIZE} "
            "PNG class folders"),
    )  # fmt: skip


if __name__ == "__main__":
    main()
