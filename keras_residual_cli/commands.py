"""The `keras-residual` commands: each imports the library (and TensorFlow with it) when it
runs, quietly unless `--debug`, and returns an exit code."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import time

from keras_residual_cli.parser import SEARCH_FLAGS


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
    if args.time_budget and args.epochs is None:
        raise ValueError(
            "--time-budget needs --epochs: the epochs the schedule is planned for, about as "
            "many as you expect the time to hold."
        )
    epochs = 1 if args.epochs is None else args.epochs
    kr = _toolkit(args)
    started = args.started  # the command's start: a --time-budget counts from it
    import keras

    from keras_residual._checks import parse_duration
    from keras_residual._files import check_output_dir

    budget = parse_duration(args.time_budget, "--time-budget")
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
    keras.utils.set_random_seed(args.seed)  # --seed fixes the initial weights too
    model = kr.build_network(spec, dtype=dtype)
    print(f"{model.name}: {model.count_params():,} parameters; data from {data.source}")
    seconds = None
    if budget is not None:
        seconds = budget - (time.monotonic() - started)
        if seconds <= 0:
            raise ValueError(
                f"--time-budget {args.time_budget} ended before training began: reading the "
                f"data and building the network took {budget - seconds:.0f} s."
            )
        print(
            f"Training for the {seconds:.0f} s left of the budget, the schedule planned for "
            f"{epochs} epoch{'s' * (epochs != 1)} paced to end with them",
            flush=True,
        )
    try:
        began = time.monotonic()
        kr.train(
            model,
            data,
            epochs=epochs,
            recipe=recipe,
            out_dir=args.out,
            resume=args.resume,
            overwrite=args.overwrite,
            seed=args.seed,
            seconds=seconds,
        )
    except kr.RunFinished as finished:  # nothing to do, nothing changed
        print(finished)
        return 0
    if seconds is not None:
        from keras_residual.training import epochs_trained

        took = time.monotonic() - began
        print(f"Trained {epochs_trained(model)} epochs in {took:.0f} s (paced to {seconds:.0f} s).")
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
        isolate_trials=not args.in_process,
        started=args.started,
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
    "tuner", "max_trials", "epochs", "trial_seconds", "time_budget", "final_epochs",
    "min_final_epochs", "max_final_epochs", "final_recipe", "final_recipe_epochs", "warm_start",
    "ensemble", "trial_share", "patience", "data_fraction", "max_params", "max_mflops", "seed",
    "image_size",
)  # fmt: skip


def _parse_value(text: str):
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        return float(text)
    except ValueError:
        return {"true": True, "false": False}.get(text.lower(), text)


def _parse_values(text: str):
    """`16` -> 16, `0.75` -> 0.75, `8,16` -> [8, 16], `A,B` -> ["A", "B"], `false,true` ->
    [False, True]; with `;`, choices of one value a stage: `1,1,1;1,0,1` -> ["1,1,1",
    "1,0,1"] (`1,0,1;`: that one choice)."""
    if ";" in text:
        values = [v.strip() for v in text.split(";") if v.strip()]
    else:
        values = [_parse_value(v) for v in text.split(",")]
    return values if len(values) > 1 else values[0]


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


COMMANDS = {
    "train": _train,
    "evaluate": _evaluate,
    "search": _search,
    "export": _export,
    "report": _report,
}
