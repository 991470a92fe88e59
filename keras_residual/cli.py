"""`python -m keras_residual.cli ...` runs the `keras-residual` command (`keras_residual_cli`)."""

import sys

from keras_residual_cli import DTYPE_ENV, build_parser, main

__all__ = ["DTYPE_ENV", "build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
