"""The `keras-residual` command line: train, evaluate, search, export, report.

A package of its own, beside `keras_residual`, so that `--help` and argument errors answer
at once: `parser` imports nothing heavy, and `commands` import the toolkit (and TensorFlow
with it) only when one runs. Every mistake a user can make ends in one line on stderr and
exit code 2 (`--debug` shows the traceback); a training or search that fails ends with exit
code 1.
"""

from __future__ import annotations

import os
import sys
import time

from keras_residual_cli.commands import COMMANDS
from keras_residual_cli.parser import (
    DTYPE_ENV,
    DTYPES,
    SEARCH_FLAGS,
    TTA_MODES,
    build_parser,
    epochs_or_auto,
)

__all__ = [
    "DTYPES",
    "DTYPE_ENV",
    "SEARCH_FLAGS",
    "TTA_MODES",
    "build_parser",
    "epochs_or_auto",
    "main",
]


def _fail(message: str, code: int) -> int:
    print(f"keras-residual: error: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None, *, started: float | None = None) -> int:
    """Run the command line `argv` (default: `sys.argv[1:]`); returns the exit code. A
    --time-budget counts from `started` (a `time.monotonic()`; None: now), so loading
    TensorFlow and the toolkit comes out of it."""
    started = time.monotonic() if started is None else started
    parser = build_parser()
    args = parser.parse_args(argv)
    args.started = started
    if not args.debug:  # --debug shows TensorFlow's start-up notices
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if getattr(args, "dtype", "auto") not in DTYPES:  # argparse does not check defaults
        parser.error(f"${DTYPE_ENV}={args.dtype!r} is not one of {', '.join(DTYPES)}")
    try:
        return COMMANDS[args.command_name](args)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except (ValueError, OSError) as error:  # the user's input: arguments, files, data
        if args.debug:
            raise
        return _fail(str(error).strip(), 2)
    except RuntimeError as error:  # training diverged, no trial completed, export mismatch
        if args.debug or not isinstance(error, _failures()):
            raise
        return _fail(str(error).strip(), 1)


def _failures() -> tuple[type, ...]:
    """The library's errors for a job that ran and failed (exit 1), imported once a command
    has loaded the library."""
    from keras_residual.exporting import ExportMismatch
    from keras_residual.search.run import SearchFailed
    from keras_residual.training import TrainingDiverged

    return TrainingDiverged, SearchFailed, ExportMismatch


if __name__ == "__main__":
    sys.exit(main())
