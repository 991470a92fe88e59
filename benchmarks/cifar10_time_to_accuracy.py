"""Time to accuracy on CIFAR-10: train a preset with its recipe on all 50,000 training
images, evaluate the test set after every epoch (with the recipe's test-time augmentation),
report when `--target` was first reached (`--test-every N`: every N-th epoch and the
last, for deep networks whose test-time augmentation costs nearly an epoch of training).

Prints the CPU flags and dtype, a per-epoch table, and a final JSON line with `preset`,
`epochs`, `final_test_accuracy`, `epochs_to_target`, `seconds_to_target` (training time
only, evaluation excluded; null if never reached), `img_per_s` and `peak_rss_mib`; saves
`time_to_accuracy.png` (test accuracy vs training time and vs epochs) and the JSON in
`--out`. `--set field=value` changes a recipe field and `--spec field=value` an architecture
field (the ablations: `--set label_smoothing=0`, `--spec stem=cifar`).

`--reference` first trains airbench94's method in PyTorch on the same data and CPU, in the
same run (`_airbench_torch.py`: its network and recipe written again for CPUs, eager,
bfloat16 autocast, channels_last; PyTorch installed for the benchmark only), tests it after
every epoch with its 6-view TTA, and reports the preset's time to the target and to the
reference's own final accuracy over the reference's, with the CPU time other processes
took during each.

Run: python benchmarks/cifar10_time_to_accuracy.py --preset fast_cifar_s --epochs 10
     python benchmarks/cifar10_time_to_accuracy.py --recipe airbench_muon --epochs 8 \
         --target 0.9067 --reference
     python benchmarks/cifar10_time_to_accuracy.py --quick   # synthetic smoke test
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(__file__))

import keras  # noqa: E402
from _data import random_dataset  # noqa: E402
from _report import cpu_flags, emit, other_cpu_seconds, parse_changes  # noqa: E402

import keras_residual as kr  # noqa: E402
from keras_residual.techniques import TTA_MODES  # noqa: E402


class TestEveryEpoch(keras.callbacks.Callback):
    """Test accuracy after every `every`-th epoch and the last, and the training time up to
    it (evaluation excluded).

    Each row has the accuracy with the recipe's test-time augmentation and, from the same
    predictions, without it; the last epoch's row has every TTA mode."""

    def __init__(self, data: kr.Dataset, tta: str, epochs: int, every: int = 1):
        super().__init__()
        self.data, self.tta, self.epochs, self.every = data, tta, epochs, every
        self.rows, self.training_seconds = [], 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.training_seconds += time.perf_counter() - self.started
        last = epoch + 1 == self.epochs
        if (epoch + 1) % self.every and not last:
            return
        modes = TTA_MODES if last else {"none", self.tta}
        accuracy = self.accuracy_by_tta(modes)
        row = {
            "epoch": epoch + 1,
            "train_seconds": round(self.training_seconds, 1),
            "train_loss": round(float(logs["loss"]), 4),
            "test_accuracy": accuracy.pop(self.tta),
        }
        row.update({f"test_accuracy_tta_{mode}": value for mode, value in accuracy.items()})
        self.rows.append(row)
        print(json.dumps(row), flush=True)

    def accuracy_by_tta(self, modes) -> dict[str, float]:
        """Test accuracy under each TTA mode in `modes`, each view predicted once."""
        images = self.data.normalize(self.data.x_test)
        widest = max(modes, key=TTA_MODES.index)  # each mode's views start the next's
        predictions = [
            self.model.predict(view, batch_size=256, verbose=0)
            for _, view in kr.tta_views(images, widest)
        ]
        accuracy = {}
        for mode in sorted(modes, key=TTA_MODES.index):
            weights = [weight for weight, _ in kr.tta_views(images[:1], mode)]
            probabilities = sum(w * p for w, p in zip(weights, predictions, strict=False))
            hits = probabilities.argmax(axis=1) == self.data.y_test
            accuracy[mode] = round(float(hits.mean()), 4)
        return accuracy


def airbench_reference(data: kr.Dataset, seed: int, epochs: float | None) -> list[dict]:
    """airbench94's method trained on `data` here (PyTorch), tested after every epoch."""
    import _airbench_torch as airbench
    import torch

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    x_test = torch.from_numpy(data.normalize(data.x_test)).permute(0, 3, 1, 2)
    x_test = x_test.contiguous(memory_format=torch.channels_last)
    y_test = torch.from_numpy(data.y_test.astype("int64"))
    epochs = epochs or airbench.EPOCHS
    rows = []

    def after_epoch(model, epoch, seconds):
        row = {"epoch": round(min(epoch, epochs), 1), "train_seconds": round(seconds, 1),
               "test_accuracy": round(airbench.accuracy(model, x_test, y_test), 4)}  # fmt: skip
        rows.append(row)
        print(json.dumps({"airbench94": row}), flush=True)

    airbench.train(data.normalize(data.x_train), data.y_train, after_epoch, epochs=epochs,
                   seed=seed)  # fmt: skip
    return rows


def first_reaching(rows: list[dict], accuracy: float) -> dict | None:
    return next((row for row in rows if row["test_accuracy"] >= accuracy), None)


def plot(rows: list[dict], target: float, title: str, path: Path) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4))
    axes = figure.subplots(1, 2)
    for axis, key, label in zip(
        axes, ("train_seconds", "epoch"), ("training time (s)", "epoch"), strict=True
    ):
        axis.plot([r[key] for r in rows], [r["test_accuracy"] for r in rows], marker="o")
        axis.axhline(target, color="grey", linestyle="--", label=f"target {target:.2%}")
        axis.set(xlabel=label, ylabel="test accuracy", title=title)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="fast_cifar_s")
    parser.add_argument("--recipe", help="default: airbench for the speed family, else fast")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--target", type=float, default=0.94)
    parser.add_argument(
        "--test-every", type=int, default=1, metavar="N",
        help="test after every N-th epoch and the last (epochs_to_target: the first tested)",
    )  # fmt: skip
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--spec", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", help="default: $KERAS_RESIDUAL_DATA or keras.datasets")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--quick", action="store_true", help="1,024 random images, 2 epochs")
    parser.add_argument(
        "--reference", action="store_true",
        help="first train airbench94's method in PyTorch on the same data (9.9 epochs)",
    )  # fmt: skip
    args = parser.parse_args()
    if not 0 < args.target < 1:
        parser.error(f"--target must lie in (0, 1), got {args.target}")
    if args.test_every < 1:
        parser.error(f"--test-every must be a positive number of epochs, got {args.test_every}")
    recipe = kr.get_recipe(args.recipe or kr.default_recipe(args.preset), **parse_changes(args.set))
    spec = kr.get_spec(args.preset).replace(**parse_changes(args.spec))
    dtype = kr.resolve_dtype(args.dtype)
    print(f"dtype policy: {dtype}; CPU flags: {' '.join(cpu_flags())}; cores: {os.cpu_count()}")

    if args.quick:
        data, epochs = random_dataset("cifar10", 1024, held_out=256), 2
    else:
        data, epochs = kr.load_dataset("cifar10", args.data_dir, validation_split=0.0), args.epochs
    reference, reference_other = [], None
    if args.reference:
        reference, reference_other = other_cpu_seconds(
            lambda: airbench_reference(data, args.seed, 1.9 if args.quick else None)
        )
        reference_other = round(reference_other, 1)
    model = kr.build_network(spec.replace(num_classes=data.num_classes), dtype=dtype)
    print(f"{model.name}: {model.count_params():,} parameters; {kr.count_flops(model) / 1e6:.0f}"
          f" MFLOPs/image; recipe: {recipe}", flush=True)  # fmt: skip
    tester = TestEveryEpoch(data, recipe.tta, epochs, args.test_every)
    _, other = other_cpu_seconds(
        lambda: kr.train(
            model, data, epochs=epochs, recipe=recipe, seed=args.seed, verbose=0, callbacks=[tester]
        )  # fmt: skip
    )

    rows = tester.rows
    reached = first_reaching(rows, args.target)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = f"{args.preset}-{'-'.join(args.set + args.spec) or 'recipe'}".replace("=", "")
    if len(tag) > 80:  # many changes: a short name, the changes are in the JSON
        tag = f"{tag[:60]}-{hashlib.sha1(tag.encode()).hexdigest()[:8]}"
    tag = re.sub(r"[^\w.,+-]", "_", tag)
    plot(rows, args.target, tag, out / f"time_to_accuracy-{tag}.png")
    summary = {
        "preset": args.preset,
        "recipe": dict(vars(recipe)),
        "changes": args.set + args.spec,
        "dtype": dtype,
        "cpu_flags": cpu_flags(),
        "epochs": epochs,
        "test_every": args.test_every,
        "final_test_accuracy": rows[-1]["test_accuracy"],
        "target": args.target,
        "epochs_to_target": reached and reached["epoch"],
        "seconds_to_target": reached and reached["train_seconds"],
        "img_per_s": round(len(data.y_train) * epochs / tester.training_seconds, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "other_cpu_s": round(other, 1),
        "quick": args.quick,
    }
    title = f"CIFAR-10 time to {args.target:.2%}: {args.preset}"
    if reference:
        summary["reference"] = compare(summary, rows, reference, args.target, reference_other)
        title += f" ({args.recipe or kr.default_recipe(args.preset)}) vs airbench94 on this CPU"
        method = f"{args.preset}, keras_residual"
        rows = [{"method": "airbench94, PyTorch", **r} for r in reference]
        rows += [{"method": method, **r} for r in tester.rows]
    (out / f"time_to_accuracy-{tag}.json").write_text(json.dumps({**summary, "rows": rows}))
    emit(title, rows, recipe=summary["recipe"], **({"summary": summary} if reference else {}))
    print(json.dumps(summary))


def compare(summary: dict, rows: list[dict], reference: list[dict], target, other) -> dict:
    """The reference's time to `target` and to its own final accuracy against the
    preset's (`rows`): each ratio is the preset's seconds over the reference's."""
    final = reference[-1]["test_accuracy"]
    theirs = first_reaching(reference, target)
    ours_to_final = first_reaching(rows, final)
    ours = summary["seconds_to_target"]
    return {
        "method": "airbench94 (PyTorch eager, bfloat16 autocast, channels_last)",
        "final_test_accuracy": final,
        "seconds": reference[-1]["train_seconds"],
        "seconds_to_target": theirs and theirs["train_seconds"],
        "ratio_to_target": ours and theirs and round(ours / theirs["train_seconds"], 3),
        "preset_seconds_to_reference_accuracy": ours_to_final and ours_to_final["train_seconds"],
        "ratio_to_reference_accuracy": ours_to_final
        and round(ours_to_final["train_seconds"] / reference[-1]["train_seconds"], 3),
        "other_cpu_s": other,
    }


if __name__ == "__main__":
    main()
