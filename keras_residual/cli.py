"""`keras-residual` command line: train, evaluate, search, report."""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", choices=("mnist", "cifar10"), default="mnist")
    parser.add_argument(
        "--data-dir",
        help="folder with mnist/mnist.npz or cifar10/cifar10.npz "
        "(default: $KERAS_RESIDUAL_DATA, else keras.datasets)",
    )


DTYPES = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
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


def _resolve_dtype(requested: str) -> str:
    """The policy `--dtype` names, said in the job's first line of output."""
    from keras_residual.precision import resolve_dtype

    dtype = resolve_dtype(requested)
    note = " (auto: the fastest this machine computes)" if requested == "auto" else ""
    print(f"dtype policy: {dtype}{note}", flush=True)
    return dtype


def _train(args) -> int:
    import keras_residual as kr

    data = kr.load_dataset(args.dataset, args.data_dir, args.validation_split, seed=args.seed)
    recipe = kr.get_recipe(
        args.recipe,
        optimizer=args.optimizer,
        learning_rate=args.lr,
        batch_size=args.batch_size,
        weight_decay=args.weight_decay,
    )
    dtype = _resolve_dtype(args.dtype)
    model = kr.build(args.model, data.input_shape, data.num_classes, dtype=dtype)
    print(f"{model.name}: {model.count_params():,} parameters; data from {data.source}")
    kr.train(
        model,
        data,
        epochs=args.epochs,
        recipe=recipe,
        out_dir=args.out,
        resume=args.resume,
        seed=args.seed,
    )
    metrics = kr.evaluate(model, data)
    print(f"test accuracy: {metrics['accuracy']:.4f}  test loss: {metrics['loss']:.4f}")
    if args.out:
        print(f"saved: {os.path.join(args.out, 'best_model.keras')}")
    return 0


def _evaluate(args) -> int:
    import keras

    import keras_residual as kr

    model = keras.saving.load_model(args.model, safe_mode=True)
    data = kr.load_dataset(args.dataset, args.data_dir, seed=args.seed)
    metrics = kr.evaluate(model, data, args.split)
    accuracy, loss = metrics["accuracy"], metrics["loss"]
    print(f"{args.split} accuracy: {accuracy:.4f}  {args.split} loss: {loss:.4f}")
    return 0


def _search(args) -> int:
    from keras_residual.search import load_space_file, run_search

    space = load_space_file(args.space) if args.space else None
    dimensions = {
        name: _parse_values(getattr(args, name))
        for name in SEARCH_FLAGS
        if getattr(args, name) is not None
    }
    run_search(
        args.dataset,
        args.out or f"runs/search-{args.dataset}",
        tuner=args.tuner,
        max_trials=args.max_trials,
        epochs=args.epochs,
        time_budget=args.time_budget,
        final_epochs=args.final_epochs,
        resume=args.resume,
        distributed_mode=args.distributed,
        worker_timeout=args.worker_timeout,
        data_dir=args.data_dir,
        space=space,
        seed=args.seed,
        dtype=_resolve_dtype(args.dtype),
        **dimensions,
    )
    return 0


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
    "block": "basic,bottleneck",
    "preact": "false,true",
    "shortcut": "A,B",
    "optimizer": "nesterov,adamw",
}


def _report(args) -> int:
    from pathlib import Path

    from keras_residual.search import collect_rows, format_table, write_results
    from keras_residual.search.run import PROJECT

    project = Path(args.directory) / PROJECT
    if not project.is_dir():
        raise FileNotFoundError(f"{args.directory} holds no search (no {PROJECT}/ folder).")
    rows = collect_rows(project)
    write_results(rows, args.directory)
    print(format_table(rows))
    print(f"\nWrote results.csv, results.json and plots into {args.directory}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keras-residual",
        description="Residual networks for Keras: train, evaluate, search, report.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a preset on MNIST or CIFAR-10")
    train.add_argument("--model", default="resnet20", help="preset name (see list_presets())")
    _add_data_arguments(train)
    train.add_argument("--epochs", type=int, default=1)
    train.add_argument("--recipe", default="fast", help="he2016, fast or adamw")
    train.add_argument("--optimizer", help="override: sgd, momentum, nesterov, rmsprop, adam(w)")
    train.add_argument("--lr", type=float, help="override the recipe's learning rate")
    train.add_argument("--batch-size", type=int)
    train.add_argument("--weight-decay", type=float)
    train.add_argument("--validation-split", type=float, default=0.1)
    train.add_argument("--out", help="output directory (logs, checkpoints, best model)")
    train.add_argument("--resume", action="store_true", help="continue an interrupted run")
    train.add_argument("--seed", type=int, default=0)
    _add_dtype_argument(train)
    train.set_defaults(run=_train)

    evaluate = commands.add_parser("evaluate", help="evaluate a saved .keras model")
    evaluate.add_argument("model", help="path to a .keras file")
    _add_data_arguments(evaluate)
    evaluate.add_argument("--split", choices=("test", "val", "train"), default="test")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.set_defaults(run=_evaluate)

    search = commands.add_parser(
        "search", help="search depth and width (and more) with keras-tuner"
    )
    _add_data_arguments(search)
    search.add_argument("--tuner", choices=("random", "bayesian", "hyperband"), default="random")
    search.add_argument("--max-trials", type=int, default=4)
    search.add_argument("--epochs", type=int, default=1, help="epochs per trial")
    search.add_argument(
        "--time-budget", default="3m", help="stop launching trials after this (90s, 10m, 1h)"
    )
    search.add_argument(
        "--final-epochs",
        type=int,
        default=2,
        help="retrain the best configuration this long for best_model.keras (0: keep its weights)",
    )
    search.add_argument("--out", help="output directory (default runs/search-DATASET)")
    search.add_argument("--resume", action="store_true", help="continue a killed search")
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
    search.add_argument("--seed", type=int, default=0)
    _add_dtype_argument(search)
    search.set_defaults(run=_search)

    report = commands.add_parser("report", help="rebuild the table and plots of a search")
    report.add_argument("directory")
    report.set_defaults(run=_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileExistsError, FileNotFoundError) as error:
        print(f"keras-residual: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
