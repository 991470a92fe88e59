"""Sample-efficiency techniques of the CIFAR-10 speed records, as reusable pieces.

The recipe turns them on (`Recipe(schedule="onecycle", ema=0.99, cutout=8, tta="flip")`);
here are the parts that are not already Keras's: the one-cycle learning-rate schedule and
test-time augmentation. Label smoothing is Keras's loss option, weight averaging is Keras's
`use_ema` (with `keras.callbacks.SwapEMAWeights` at validation), flip/translate/cutout are
in the data pipeline, and the whitening first layer is `PatchWhitening`.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_residual import _checks

TTA_MODES = ("none", "flip", "flip_translate")


@keras.saving.register_keras_serializable(package="keras_residual")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from `peak * start_fraction` to `peak`, then linear decay to zero.

    The triangular schedule of Smith's one-cycle policy as Page's ResNet-9 and airbench
    use it: few epochs need a schedule that spends little time at either end.

    Args:
        peak: the largest learning rate, reached at step `warmup_steps`.
        total_steps: the step at which the rate reaches zero.
        warmup_steps: steps of linear warm-up (0: start at the peak).
        start_fraction: the first step's rate as a fraction of `peak`.

    Example:
    >>> schedule = OneCycle(peak=1.0, total_steps=10, warmup_steps=2, start_fraction=0.0)
    >>> [round(float(schedule(step)), 3) for step in (0, 1, 2, 6, 10)]
    [0.0, 0.5, 1.0, 0.5, 0.0]
    """

    def __init__(self, peak, total_steps, warmup_steps=0, start_fraction=0.1):
        self.peak = _checks.positive("peak", peak)
        self.total_steps = _checks.positive_int("total_steps", total_steps)
        self.warmup_steps = _checks.non_negative_int("warmup_steps", warmup_steps)
        if self.warmup_steps >= self.total_steps:
            raise ValueError(
                f"`warmup_steps` ({warmup_steps}) must be less than `total_steps` ({total_steps})."
            )
        self.start_fraction = _checks.rate("start_fraction", start_fraction, allow_one=True)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        start = self.peak * self.start_fraction
        rising = start + (self.peak - start) * step / max(self.warmup_steps, 1)
        falling = self.peak * (self.total_steps - step) / (self.total_steps - self.warmup_steps)
        rate = ops.where(step < self.warmup_steps, rising, falling)
        return ops.clip(rate, 0.0, self.peak)

    def get_config(self):
        return {
            "peak": self.peak,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "start_fraction": self.start_fraction,
        }


def check_tta(tta: str, model: keras.Model | None = None) -> str:
    """`tta` if it names a mode of `TTA_MODES` that `model` can use, else a ValueError.

    Flipping needs an image batch: a 4-D (batch, height, width, channels) input.

    Example:
    >>> check_tta("flip")
    'flip'
    """
    _checks.choice("tta", tta, TTA_MODES)
    if tta != "none" and model is not None:
        shape = model.input_shape if isinstance(model.input_shape, tuple) else None
        if shape is None or len(shape) != 4:
            raise ValueError(
                f"`tta={tta!r}` flips images, so the model needs one 4-D image input "
                f"(batch, height, width, channels); {model.name!r} takes {model.input_shape}."
            )
    return tta


def tta_views(images, tta: str) -> list[tuple[float, np.ndarray]]:
    """The test-time views of an NHWC batch with their weights (summing to 1).

    `"flip"`: the images and their mirror images, half each. `"flip_translate"`: airbench's
    level 2, half on those two and a quarter each on the pair shifted one pixel diagonally
    either way (edges reflected).

    Example:
    >>> import numpy as np
    >>> [weight for weight, _ in tta_views(np.zeros((1, 4, 4, 3)), "flip_translate")]
    [0.25, 0.25, 0.125, 0.125, 0.125, 0.125]
    """
    _checks.choice("tta", tta, TTA_MODES)
    images = np.asarray(images)
    if tta == "none":
        return [(1.0, images)]
    views = [(1.0, images)]
    if tta == "flip_translate":
        height, width = images.shape[1:3]
        padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
        views = [(0.5, images), (0.25, padded[:, :height, :width]), (0.25, padded[:, 2:, 2:])]
    return [
        (weight / 2, view) for weight, image in views for view in (image, np.flip(image, axis=2))
    ]


def predict_with_tta(model: keras.Model, images, tta: str = "flip", batch_size: int = 256):
    """Class probabilities of `model` on `images` (NHWC, as the model takes them),
    averaged over the test-time views of `tta_views`: `"none"` (the image), `"flip"` (the
    image and its mirror image) or `"flip_translate"` (also 1-pixel shifts, mirrored).

    Example:
    >>> import numpy as np
    >>> from keras_residual import resnet_cifar
    >>> model = resnet_cifar(8, (8, 8, 1), 3, width=4)
    >>> predict_with_tta(model, np.zeros((2, 8, 8, 1), "float32")).shape
    (2, 3)
    """
    check_tta(tta, model)
    return sum(
        weight * model.predict(view, batch_size=batch_size, verbose=0)
        for weight, view in tta_views(images, tta)
    )
