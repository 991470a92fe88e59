"""`python -m keras_residual ...` runs the `keras-residual` command (`keras_residual_cli`).

The command line is an application of the library, in a package of its own so that
`--help` and argument errors answer before TensorFlow loads; the library never imports it.
"""

import sys

from keras_residual._started import LOADING_STARTED
from keras_residual_cli import main

sys.exit(main(started=LOADING_STARTED))  # the package (and Keras) loaded first
