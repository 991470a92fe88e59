"""The `keras-residual` command line: train, evaluate, search, export, report.

A package of its own, beside `keras_residual`, so that `--help` and argument errors answer
at once: the toolkit, and TensorFlow with it, is imported only when a command runs. Every
mistake a user can make ends in one line on stderr and exit code 2 (`--debug` shows the
traceback); a training or search that fails ends with exit code 1.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset",
        default="mnist",
        help="mnist, fashion_mnist, cifar10, cifar100, a folder of class subfolders of "
        "images, or an .npz with x_train, y_train [, x_test, y_test] (default: mnist)",
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


@contextlib.contextmanager
def _quiet_native_stderr(quiet: bool):
    """Silence what TensorFlow's C++ prints while it is imported (absl and oneDNN notices
    that ignore TF_CPP_MIN_LOG_LEVEL); Python's own errors still show once it is back."""
    if not quiet:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _toolkit(args):
    """`keras_residual`, imported now (quietly unless --debug)."""
    with _quiet_native_stderr(quiet=not args.debug):
        return importlib.import_module("keras_residual")


def _resolve_dtype(requested: str) -> str:
    """The policy `--dtype` names, said in the job's first line of output."""
    from keras_residual.precision import resolve_dtype

    dtype = resolve_dtype(requested)
    note = " (auto: the fastest this machine computes)" if requested == "auto" else ""
    print(f"dtype policy: {dtype}{note}", flush=True)
    return dtype


def _train(args) -> int:
    if (args.resume or args.overwrite) and not args.out:  # before TensorFlow loads
        flag = "--resume" if args.resume else "--overwrite"
        raise ValueError(f"{flag} needs --out: the folder of the run.")
    kr = _toolkit(args)
    from keras_residual._files import check_output_dir

    if args.out:
        check_output_dir(args.out, "--out")
    recipe = kr.get_recipe(  # a bad override fails before any data is read
        args.recipe or kr.default_recipe(args.model),
        optimizer=args.optimizer,
        learning_rate=args.lr,
        batch_size=args.batch_size,
        weight_decay=args.weight_decay,
        tta=args.tta,
    )
    spec = kr.get_spec(args.model)
    data = kr.load_dataset(
        args.dataset, args.data_dir, args.validation_split, args.seed, image_size=args.image_size
    )
    dtype = _resolve_dtype(args.dtype)
    spec = spec.replace(input_shape=data.input_shape, num_classes=data.num_classes)
    model = kr.build_network(spec, dtype=dtype)
    print(f"{model.name}: {model.count_params():,} parameters; data from {data.source}")
    try:
        kr.train(
            model,
            data,
            epochs=args.epochs,
            recipe=recipe,
            out_dir=args.out,
            resume=args.resume,
            overwrite=args.overwrite,
            seed=args.seed,
        )
    except kr.RunFinished as finished:  # nothing to do, nothing changed
        print(finished)
        return 0
    metrics = kr.evaluate(model, data, tta=recipe.tta)
    with_tta = f" (tta: {recipe.tta})" if recipe.tta != "none" else ""
    print(f"test accuracy: {metrics['accuracy']:.4f}  test loss: {metrics['loss']:.4f}{with_tta}")
    if args.out:
        print(f"saved: {os.path.join(args.out, 'best_model.keras')}")
    return 0


def _evaluate(args) -> int:
    if not os.path.isfile(args.model):  # before TensorFlow loads
        what = "is a folder" if os.path.isdir(args.model) else "no such file"
        raise ValueError(f"`model` {args.model}: {what}.")
    kr = _toolkit(args)
    from keras_residual.exporting import load_model
    from keras_residual.techniques import check_tta

    model = load_model(args.model)
    check_tta(args.tta, model)
    data = kr.load_dataset(args.dataset, args.data_dir, seed=args.seed, image_size=args.image_size)
    metrics = kr.evaluate(model, data, args.split, tta=args.tta)
    accuracy, loss = metrics["accuracy"], metrics["loss"]
    with_tta = f" (tta: {args.tta})" if args.tta != "none" else ""
    print(f"{args.split} accuracy: {accuracy:.4f}  {args.split} loss: {loss:.4f}{with_tta}")
    return 0


def _search(args) -> int:
    _toolkit(args)
    from keras_residual._files import check_output_dir
    from keras_residual.search import SearchConfig, load_space_file, run_search
    from keras_residual.search.run import default_out

    out = args.out or default_out(args.dataset or "mnist")
    check_output_dir(out, "--out")
    saved = _saved_config(out) if args.resume else None
    dataset = args.dataset or (saved.dataset if saved else "mnist")
    space = load_space_file(args.space) if args.space else {}
    flags = {name: getattr(args, name) for name in SEARCH_FLAGS}
    space |= {name: _parse_values(value) for name, value in flags.items() if value is not None}
    given = {name: getattr(args, name) for name in SEARCH_SETTINGS}
    given = {k: v for k, v in given.items() if v is not None}
    if saved is not None and saved.dataset == dataset:  # --resume alone: the search it holds
        config = saved.replace(**given, space={**saved.space, **space})
    else:
        config = SearchConfig.for_dataset(dataset, **given, space=space)
    config = config.replace(
        data_dir=args.data_dir or config.data_dir, dtype=_resolve_dtype(args.dtype)
    )
    run_search(
        config,
        out,
        resume=args.resume,
        distributed_mode=args.distributed,
        worker_timeout=args.worker_timeout,
    )
    return 0


def _saved_config(out: str):
    """The `SearchConfig` the search in `out` recorded, or None (none there, or recorded
    before configs were)."""
    from pathlib import Path

    from keras_residual._files import read_json
    from keras_residual.search import SearchConfig

    path = Path(out) / "search.json"
    if not path.exists():
        return None
    saved = read_json(path, "the search's settings").get("search_config")
    return None if saved is None else SearchConfig.from_dict(saved)


# `SearchConfig` fields with a flag of their own (None: not given).
SEARCH_SETTINGS = (
    "tuner", "max_trials", "epochs", "time_budget", "final_epochs", "min_final_epochs",
    "trial_share", "data_fraction", "max_params", "max_mflops", "seed", "image_size",
)  # fmt: skip


def epochs_or_auto(text: str) -> int | str:
    """`--final-epochs`: a number of epochs or `auto`."""
    if text.strip().lower() == "auto":
        return "auto"
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected a number of epochs or 'auto', got {text!r}")
    return int(text)


def _parse_value(text: str):
    text = text.strip()
    if text.isdigit():
        return int(text)
    return {"true": True, "false": False}.get(text.lower(), text)


def _parse_values(text: str):
    """`16` -> 16, `8,16` -> [8, 16], `A,B` -> ["A", "B"], `false,true` -> [False, True]."""
    values = [_parse_value(v) for v in text.split(",")]
    return values if len(values) > 1 else values[0]


SEARCH_FLAGS = {  # search dimensions with a flag of their own, and an example
    "blocks_per_stage": "1,2,3",
    "width": "8,16",
    "downsample": "pool,stride",
    "block": "basic,bottleneck",
    "preact": "false,true",
    "shortcut": "A,B",
    "activation": "relu,gelu",
    "optimizer": "nesterov,adamw",
}


def _export(args) -> int:
    _toolkit(args)
    from keras_residual.exporting import export

    report = export(args.model, args.out, args.format, overwrite=args.overwrite)
    print(
        f"exported {args.model} as {report.format} to {report.path}, computing in float32: "
        f"max |diff| {report.max_abs_diff:.2g} vs the float32 Keras model (tolerance "
        f"{report.tolerance:g}), {report.source_max_abs_diff:.2g} vs the model as trained "
        f"({report.source_policy})"
    )
    return 0


def _report(args) -> int:
    from pathlib import Path

    _toolkit(args)
    from keras_residual._files import folder_lock, read_json
    from keras_residual.search import collect_rows, format_table, promotion_ladder, write_results
    from keras_residual.search.run import PROJECT

    directory = Path(args.directory)
    if not (directory / PROJECT).is_dir():
        raise FileNotFoundError(f"{directory} holds no search (no {PROJECT}/ folder).")
    rows = collect_rows(directory / PROJECT)
    if not rows:
        raise ValueError(f"{directory} holds a search with no trial yet: nothing to report.")
    max_params = None
    if (directory / "search.json").exists():
        try:  # only the plot's constraint line comes from it: report the trials regardless
            settings = read_json(directory / "search.json", "the search's settings")
            max_params = settings.get("max_params")
        except ValueError as error:
            print(f"note: {error}; the Pareto plot is drawn without its constraint line")
    with folder_lock(directory, "directory"):  # not while a search writes it
        write_results(rows, directory, max_params=max_params)
    print(format_table(rows))
    ladder = promotion_ladder(rows)
    if ladder:
        print(f"\n{ladder}")
    for row in rows:
        if row["status"] == "unreadable":
            print(f"note: {row['reason']}")
    print(f"\nWrote results.csv, results.json and plots into {directory}")
    return 0


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
    train.add_argument("--epochs", type=int, default=1)
    train.add_argument(
        "--recipe",
        help="he2016, fast, fast_cifar, airbench or adamw (default: airbench for the "
        "fast_cifar presets, else fast)",
    )
    train.add_argument("--optimizer", help="override: sgd, momentum, nesterov, rmsprop, adam(w)")
    train.add_argument("--lr", type=float, help="override the recipe's learning rate")
    train.add_argument("--batch-size", type=int)
    train.add_argument("--weight-decay", type=float)
    train.add_argument("--validation-split", type=float, default=0.1)
    train.add_argument(
        "--tta", choices=TTA_MODES, help="test-time augmentation (default: the recipe's)"
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
    train.set_defaults(run=_train)

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
    evaluate.set_defaults(run=_evaluate)

    search = commands.add_parser(
        "search", help="search depth and width (and more) with keras-tuner"
    )
    _add_data_arguments(search)
    search.add_argument(
        "--tuner", choices=("random", "bayesian", "hyperband"), help="default: random"
    )
    search.add_argument(
        "--max-trials", type=int, help="default: MNIST 9, else 32 (the budget decides)"
    )
    search.add_argument("--epochs", type=int, help="epochs per trial (default 1)")
    search.add_argument(
        "--time-budget",
        help="the whole search's, final retraining included: 90s, 10m, 1h (default: MNIST "
        "4.5m, else 20m)",
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
        "slow for it before they train (default: MNIST 1, else 5)",
    )
    search.add_argument(
        "--trial-share",
        type=float,
        help="with --final-epochs auto: the budget's share for trials (default 0.5)",
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
    search.set_defaults(run=_search, dataset=None)  # --resume alone: the search's own

    export = commands.add_parser(
        "export", help="write a .keras model as a float32 SavedModel or TFLite file, checked"
    )
    export.add_argument("model", help="path to a .keras file")
    export.add_argument("--format", choices=("saved_model", "tflite"), default="saved_model")
    export.add_argument("--out", required=True, help="SavedModel folder or .tflite file")
    export.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    export.set_defaults(run=_export)

    report = commands.add_parser("report", help="rebuild the table and plots of a search")
    report.add_argument("directory")
    report.set_defaults(run=_report)
    return parser


def _fail(message: str, code: int) -> int:
    print(f"keras-residual: error: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    """Run the command line `argv` (default: `sys.argv[1:]`); returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.debug:  # --debug shows TensorFlow's start-up notices
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if getattr(args, "dtype", "auto") not in DTYPES:  # argparse does not check defaults
        parser.error(f"${DTYPE_ENV}={args.dtype!r} is not one of {', '.join(DTYPES)}")
    try:
        return args.run(args)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except (ValueError, OSError) as error:  # the user's input: arguments, files, data
        if args.debug:
            raise
        return _fail(str(error).strip(), 2)
    except RuntimeError as error:  # training diverged, no trial completed, export mismatch
        failures = ("TrainingDiverged", "SearchFailed", "ExportMismatch")
        if args.debug or type(error).__name__ not in failures:
            raise
        return _fail(str(error).strip(), 1)


if __name__ == "__main__":
    sys.exit(main())
