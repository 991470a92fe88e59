"""`python -m keras_residual_cli ...` runs the `keras-residual` command."""

import sys

from keras_residual_cli import main

sys.exit(main())
