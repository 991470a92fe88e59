"""The `keras-residual` argument parser: flags, choices and help, importing nothing heavy
(`--help` and argument errors answer before TensorFlow loads)."""

from __future__ import annotations

import argparse
import os


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset",
        default="mnist",
        help="mnist, fashion_mnist, cifar10, cifar100, a folder of class subfolders of "
        "images, a UCR/UEA time-series folder (NAME_TRAIN.ts and NAME_TEST.ts, or .tsv), "
        "or an .npz with x_train, y_train [, x_test, y_test] (default: mnist)",
    )
    parser.add_argument(
        "--data-dir",
        help="folder with NAME/NAME.npz for the named datasets "
        "(default: $KERAS_RESIDUAL_DATA, else keras.datasets)",
    )
    parser.add_argument(
        "--image-size",
        type=_image_size,
        help="size images of a folder are resized to: N or HEIGHT,WIDTH (default: the first's)",
    )


def _image_size(text: str) -> int | tuple[int, int]:
    try:
        sides = tuple(int(side) for side in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"N or HEIGHT,WIDTH, got {text!r}") from None
    if len(sides) > 2 or min(sides) < 1:
        raise argparse.ArgumentTypeError(f"N or HEIGHT,WIDTH of positive sizes, got {text!r}")
    return sides[0] if len(sides) == 1 else sides


# The toolkit's choices, spelled here so that --help needs no TensorFlow (tests keep them equal).
DTYPES = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
TTA_MODES = ("none", "flip", "flip_translate")
DTYPE_ENV = "KERAS_RESIDUAL_DTYPE"  # the default of --dtype


def _add_dtype_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dtype",
        choices=DTYPES,
        default=os.environ.get(DTYPE_ENV) or "auto",
        help="Keras dtype policy of the models: auto (mixed_bfloat16 on CPUs that compute "
        "bfloat16 natively, mixed_float16 on a GPU with tensor cores, else float32) or a "
        f"policy name (default: ${DTYPE_ENV}, else auto)",
    )


def count_or(word: str, what: str):
    """An argparse type: a whole number of `what`, or `word` (passed on as the word: the
    settings read it)."""

    def parse(text: str) -> int | str:
        if text.strip().lower() == word:
            return word
        if not text.strip().isdigit():
            raise argparse.ArgumentTypeError(
                f"expected a number of {what} or {word!r}, got {text!r}"
            )
        return int(text)

    return parse


epochs_or_auto = count_or("auto", "epochs")  # --final-epochs
trials_or_none = count_or("none", "trials")  # --patience


SEARCH_FLAGS = {  # search dimensions with a flag of their own, and an example
    "blocks_per_stage": "1,2,3; or a count a stage, choices ';'-separated: '1,1,1;1,0,1'",
    "width": "8,16; or filters a stage, choices ';'-separated: '64,256,256;128'",
    "downsample": "pool,stride",
    "block": "basic,bottleneck",
    "preact": "false,true",
    "shortcut": "A,B",
    "activation": "relu,gelu",
    "optimizer": "nesterov,adamw",
    "input_scale": "1,0.75; or auto: down to 32 pixels a side",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keras-residual",
        description="Residual networks for Keras: train, evaluate, search, export, report.",
    )
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks and TensorFlow's start-up output"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a preset on MNIST or CIFAR-10")
    train.add_argument("--model", default="resnet20", help="preset name (see list_presets())")
    _add_data_arguments(train)
    train.add_argument(
        "--epochs",
        type=int,
        help="epochs to train (default: 1); with --time-budget, the epochs its schedule is "
        "planned for (up to twice as many, or fewer, train: the time decides)",
    )
    train.add_argument(
        "--recipe",
        help="he2016, fast, fast_cifar, airbench, adamw, series or wang2017 (default: the "
        "preset's: airbench for the fast_cifar presets, series for the time-series ones, "
        "else fast)",
    )
    train.add_argument("--optimizer", help="override: sgd, momentum, nesterov, rmsprop, adam(w)")
    train.add_argument("--lr", type=float, help="override the recipe's learning rate")
    train.add_argument("--batch-size", type=int)
    train.add_argument("--weight-decay", type=float)
    train.add_argument("--validation-split", type=float, default=0.1)
    train.add_argument(
        "--tta", choices=TTA_MODES, help="test-time augmentation (default: the recipe's)"
    )
    train.add_argument(
        "--time-budget",
        help="train for this long, counted from when the command started (loading "
        "TensorFlow, reading the data and building the network included): the schedule "
        "planned for --epochs is stretched or shrunk to end with it, however fast the steps "
        "run; the test follows. "
        "90s, 10m, 1h (default: none, --epochs decide)",
    )
    train.add_argument("--out", help="output directory (logs, checkpoints, best model)")
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out: an interrupted one, or a finished one to more --epochs",
    )
    train.add_argument("--overwrite", action="store_true", help="replace the run that --out holds")
    train.add_argument("--seed", type=int, default=0)
    _add_dtype_argument(train)
    train.set_defaults(command_name="train")

    evaluate = commands.add_parser("evaluate", help="evaluate a saved .keras model")
    evaluate.add_argument("model", help="path to a .keras file")
    _add_data_arguments(evaluate)
    evaluate.add_argument("--split", choices=("test", "val", "train"), default="test")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument(
        "--tta",
        choices=TTA_MODES,
        default="none",
        help="flip: average with the mirror image; flip_translate: and 1-pixel shifts",
    )
    evaluate.set_defaults(command_name="evaluate")

    search = commands.add_parser(
        "search", help="search depth and width (and more) with keras-tuner"
    )
    _add_data_arguments(search)
    search.add_argument(
        "--tuner", choices=("random", "bayesian", "hyperband"), help="default: random"
    )
    search.add_argument(
        "--max-trials",
        type=int,
        help="default: MNIST 9, time series 12, else 32 (the budget decides)",
    )
    search.add_argument(
        "--epochs", type=int, help="epochs per trial (default: time series 30, else 1)"
    )
    search.add_argument(
        "--trial-seconds",
        help="each trial trains its network for this long (whole epochs, or one more of part "
        "of the images each; at least --epochs), so trials compare at equal time: 30s, 2m, "
        "auto (the trials' share of the budget over 12) or none (default: auto for images "
        "other than MNIST's, else none)",
    )
    search.add_argument(
        "--time-budget",
        help="the whole search's, the final retraining and its test included, counted from "
        "the command's start (loading TensorFlow too): 90s, 10m, 1h, or none "
        "(default: MNIST 4.5m, time series 10m, else 20m)",
    )
    search.add_argument(
        "--final-epochs",
        type=epochs_or_auto,
        help="retrain the best configuration this long for best_model.keras, longer when "
        "the budget leaves time (0: keep its weights; auto: as long as the budget leaves; "
        "default: MNIST 3, else auto)",
    )
    search.add_argument(
        "--min-final-epochs",
        type=int,
        help="with --final-epochs auto: retrain at least this long, and skip networks too "
        "slow for it before they train (default: MNIST 1, time series 60, else 5)",
    )
    search.add_argument(
        "--max-final-epochs",
        type=int,
        help="the time a budget leaves extends the retraining to at most this many epochs "
        "(default: time series 300, else as many as fit)",
    )
    search.add_argument(
        "--final-recipe",
        help="retrain the best with this recipe (wang2017: the published time-series one) for "
        "--final-recipe-epochs where its first epochs say they fit the time left (default "
        "none: the trials' recipe)",
    )
    search.add_argument("--final-recipe-epochs", type=int, help="of --final-recipe (default 1500)")
    search.add_argument(
        "--warm-start",
        action=argparse.BooleanOptionalAction,
        help="the retraining starts from the weights the best trial trained, not afresh, so "
        "its trial's time is not spent again on the same first epochs (default: on)",
    )
    search.add_argument(
        "--ensemble",
        type=int,
        help="the saved model averages up to this many copies of the best configuration, "
        "retrained with seeds of their own, as many as the budget's time left allows "
        "(default: time series 5, else 1)",
    )
    search.add_argument(
        "--trial-share",
        type=float,
        help="with --final-epochs auto: the budget's share for trials (default 0.5)",
    )
    search.add_argument(
        "--patience",
        type=trials_or_none,
        help="no trial starts once this many have completed since the best without scoring "
        "higher (since the preset the search started from without replacing it); with "
        "--final-epochs auto their time goes to the retraining (default: 2 for CIFAR and "
        "your own images; none, trials take their share, for MNIST and time series)",
    )
    search.add_argument("--out", help="output directory (default runs/search-DATASET)")
    search.add_argument(
        "--resume",
        action="store_true",
        help="continue the search in --out with the settings it recorded (flags given must match)",
    )
    search.add_argument("--space", help="JSON file narrowing or fixing search dimensions")
    for name, example in SEARCH_FLAGS.items():
        flag = "--" + name.replace("_", "-")
        search.add_argument(flag, dest=name, help=f"choices, comma-separated (e.g. {example})")
    search.add_argument(
        "--distributed",
        action="store_true",
        help="keras-tuner chief/worker mode (KERASTUNER_TUNER_ID, _ORACLE_IP, _ORACLE_PORT)",
    )
    search.add_argument(
        "--worker-timeout", type=float, default=60, help="seconds before a silent worker is lost"
    )
    search.add_argument(
        "--in-process",
        action="store_true",
        help="train the trials in this process, not in a trial process (for a debugger: "
        "memory then grows with every trial, and a crash ends the search)",
    )
    search.add_argument("--seed", type=int, help="draws and seeds the trials (default 0)")
    search.add_argument("--max-params", type=int, help="reject networks with more parameters")
    search.add_argument(
        "--max-mflops", type=float, help="reject networks with more forward MFLOPs per image"
    )
    search.add_argument(
        "--data-fraction",
        type=float,
        help="train trials on this share of the training set (final retraining: all of it; "
        "default: MNIST 0.2, else 1)",
    )
    _add_dtype_argument(search)
    search.set_defaults(command_name="search", dataset=None)  # --resume alone: the search's own

    export = commands.add_parser(
        "export", help="write a .keras model as a float32 SavedModel or TFLite file, checked"
    )
    export.add_argument("model", help="path to a .keras file")
    export.add_argument("--format", choices=("saved_model", "tflite"), default="saved_model")
    export.add_argument("--out", required=True, help="SavedModel folder or .tflite file")
    export.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    export.set_defaults(command_name="export")

    report = commands.add_parser("report", help="rebuild the table and plots of a search")
    report.add_argument("directory")
    report.set_defaults(command_name="report")
    return parser
