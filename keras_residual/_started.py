"""When the toolkit began to load (the package imports this first): `python -m
keras_residual` loads the package, and Keras with it, before its command line runs, and
counts a --time-budget from here."""

import time

LOADING_STARTED = time.monotonic()
