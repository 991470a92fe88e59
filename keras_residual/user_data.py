"""Deprecated: `keras_residual.data.user` (this alias goes in the next release)."""

import warnings

from keras_residual.data.user import IMAGE_EXTENSIONS, load_arrays, load_image_folder

warnings.warn(
    "keras_residual.user_data moved to keras_residual.data.user; import it from there "
    "(or use kr.load_arrays, kr.load_image_folder).",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["IMAGE_EXTENSIONS", "load_arrays", "load_image_folder"]
