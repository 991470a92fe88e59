"""Sample-efficiency techniques of the CIFAR-10 speed records, as reusable pieces.

The recipe turns them on (`Recipe(schedule="onecycle", ema=0.99, cutout=8, tta="flip")`);
here are the parts that are not already Keras's: the one-cycle learning-rate schedule, the
optimizers' parameter groups (`RateScaledSGD`, `MuonSGD`), Lookahead and test-time
augmentation. Label smoothing is Keras's loss option, weight averaging is Keras's
`use_ema` (with `keras.callbacks.SwapEMAWeights` at validation), flip/translate/cutout are
in the data pipeline, and the whitening first layer is `PatchWhitening`.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_residual import _checks
from keras_residual.recipes import TTA_MODES


@keras.saving.register_keras_serializable(package="keras_residual")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from `peak * start_fraction` to `peak`, then linear decay to
    `peak * end_fraction`.

    The triangular schedule of Smith's one-cycle policy as Page's ResNet-9 and airbench
    use it: few epochs need a schedule that spends little time at either end.

    Args:
        peak: the largest learning rate, reached at step `warmup_steps`.
        total_steps: the step at which the rate reaches its end.
        warmup_steps: steps of linear warm-up (0: start at the peak).
        start_fraction: the first step's rate as a fraction of `peak`.
        end_fraction: the last step's rate as a fraction of `peak` (airbench: 0.07).

    Example:
    >>> schedule = OneCycle(peak=1.0, total_steps=10, warmup_steps=2, start_fraction=0.0)
    >>> [round(float(schedule(step)), 3) for step in (0, 1, 2, 6, 10)]
    [0.0, 0.5, 1.0, 0.5, 0.0]
    """

    def __init__(self, peak, total_steps, warmup_steps=0, start_fraction=0.1, end_fraction=0.0):
        self.peak = _checks.positive("peak", peak)
        self.total_steps = _checks.positive_int("total_steps", total_steps)
        self.warmup_steps = _checks.non_negative_int("warmup_steps", warmup_steps)
        if self.warmup_steps >= self.total_steps:
            raise ValueError(
                f"`warmup_steps` ({warmup_steps}) must be less than `total_steps` ({total_steps})."
            )
        self.start_fraction = _checks.rate("start_fraction", start_fraction, allow_one=True)
        self.end_fraction = _checks.rate("end_fraction", end_fraction, allow_one=True)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        start = self.peak * self.start_fraction
        rising = start + (self.peak - start) * step / max(self.warmup_steps, 1)
        end = self.peak * self.end_fraction
        remaining = (self.total_steps - step) / (self.total_steps - self.warmup_steps)
        falling = end + (self.peak - end) * remaining
        rate = ops.where(step < self.warmup_steps, rising, falling)
        return ops.clip(rate, min(start, end), self.peak)

    def get_config(self):
        return {
            "peak": self.peak,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "start_fraction": self.start_fraction,
            "end_fraction": self.end_fraction,
        }


@keras.saving.register_keras_serializable(package="keras_residual")
class RateScaledSGD(keras.optimizers.SGD):
    """`keras.optimizers.SGD` whose learning rate is multiplied, for variables of the
    given names, by their factor: airbench trains batch-norm shifts (`"beta"`) 64x faster
    than the kernels. For (momentum) SGD a scaled gradient is exactly a scaled rate, so the
    factor multiplies the gradient; decoupled weight decay is not scaled.

    Args:
        rate_multipliers: variable name (as `variable.name`, e.g. `"beta"`, `"bias"`) ->
            factor > 0.
        **kwargs: those of `keras.optimizers.SGD`.

    Example:
    >>> optimizer = RateScaledSGD({"beta": 64.0}, learning_rate=0.1, momentum=0.85)
    >>> optimizer.rate_multipliers
    {'beta': 64.0}
    """

    def __init__(self, rate_multipliers: dict[str, float] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.rate_multipliers = {
            str(name): _checks.positive(f"rate_multipliers[{name!r}]", factor)
            for name, factor in dict(rate_multipliers or {}).items()
        }

    def apply(self, grads, trainable_variables=None):
        if trainable_variables is not None:
            trainable_variables = list(trainable_variables)
        variables = trainable_variables or self._trainable_variables
        grads = [
            g if g is None or v.name not in self.rate_multipliers
            else g * ops.cast(self.rate_multipliers[v.name], g.dtype)
            for g, v in zip(grads, variables, strict=True)
        ]  # fmt: skip
        return super().apply(grads, trainable_variables)

    def get_config(self):
        return {**super().get_config(), "rate_multipliers": self.rate_multipliers}


# Newton-Schulz quintic coefficients of Muon (Jordan et al. 2024): chosen for the largest
# slope at zero, so three steps take every singular value to about 0.5-1.5.
NEWTON_SCHULZ = (3.4445, -4.7750, 2.0315)


def orthogonalize(matrix, steps: int = 3, epsilon: float = 1e-7):
    """About the orthogonal factor `U V^T` of `matrix = U S V^T`: Muon's Newton-Schulz
    iteration, `steps` quintic steps from the matrix scaled to a Frobenius norm of 1.

    Example:
    >>> x = orthogonalize(np.random.default_rng(0).normal(size=(64, 8)).astype("float32"))
    >>> singular = np.linalg.svd(x, compute_uv=False)
    >>> tuple(x.shape), bool(np.all((singular > 0.5) & (singular < 1.5)))
    ((64, 8), True)
    """
    a, b, c = NEWTON_SCHULZ
    x = matrix / (ops.sqrt(ops.sum(ops.square(matrix))) + epsilon)
    tall = matrix.shape[0] > matrix.shape[1]  # iterate on the smaller Gram matrix
    if tall:
        x = ops.transpose(x)
    for _ in range(steps):
        gram = ops.matmul(x, ops.transpose(x))
        x = a * x + ops.matmul(b * gram + c * ops.matmul(gram, gram), x)
    return ops.transpose(x) if tall else x


@keras.saving.register_keras_serializable(package="keras_residual")
class MuonSGD(RateScaledSGD):
    """Muon for convolution kernels, `RateScaledSGD` for every other variable: the two
    parameter groups of airbench94_muon (Jordan 2024).

    A kernel (a variable of rank 3 or more, flattened to `(inputs x kernel, filters)`)
    takes the Muon step: momentum `muon_momentum` (Nesterov when `nesterov`) on the raw
    gradient, the direction orthogonalized (`orthogonalize`), the kernel first rescaled to
    a Frobenius norm of `sqrt(filters)` and then moved by `muon_rate_ratio` times the
    learning rate, so both groups follow one schedule. The rescaling undoes any weight
    decay of the kernels. Keras's own `keras.optimizers.Muon` takes its Muon step for 2-D
    variables only, and AdamW for convolution kernels.

    Args:
        rate_multipliers: learning-rate factors of the SGD group by variable name
            (`RateScaledSGD`).
        muon_rate_ratio: the kernels' rate over the learning rate.
        muon_momentum: the kernels' momentum (airbench94_muon: 0.6).
        newton_schulz_steps: orthogonalization steps (airbench94_muon: 3).
        newton_schulz_dtype: the dtype it runs in: the model's compute dtype
            (`compile_model` passes it; bfloat16 halves its cost with AMX).
        **kwargs: those of `keras.optimizers.SGD`: the SGD group's.

    Example:
    >>> optimizer = MuonSGD(muon_rate_ratio=0.15, learning_rate=1.6, momentum=0.85)
    >>> kernel = keras.Variable(np.ones((3, 3, 4, 8), "float32"))
    >>> optimizer.apply([np.ones((3, 3, 4, 8), "float32")], [kernel])
    >>> round(float(np.linalg.norm(kernel.numpy())), 2)  # sqrt(8), less the step
    2.66
    """

    def __init__(
        self,
        rate_multipliers: dict[str, float] | None = None,
        muon_rate_ratio: float = 1.0,
        muon_momentum: float = 0.6,
        newton_schulz_steps: int = 3,
        newton_schulz_dtype: str = "float32",
        **kwargs,
    ):
        super().__init__(rate_multipliers, **kwargs)
        self.newton_schulz_dtype = _checks.choice(
            "newton_schulz_dtype", newton_schulz_dtype, ("float32", "bfloat16", "float16")
        )
        self.muon_rate_ratio = _checks.positive("muon_rate_ratio", muon_rate_ratio)
        self.muon_momentum = _checks.rate("muon_momentum", muon_momentum)
        self.newton_schulz_steps = _checks.positive_int("newton_schulz_steps", newton_schulz_steps)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        if not self.momentums:  # SGD keeps none without momentum; the kernels need theirs
            self.momentums = self.add_optimizer_variables(variables, "momentum")

    def update_step(self, gradient, variable, learning_rate):
        if len(variable.shape) < 3:
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        buffer = self.momentums[self._get_variable_index(variable)]
        gradient = ops.cast(gradient, dtype)
        momentum = ops.cast(self.muon_momentum, dtype)
        self.assign(buffer, buffer * momentum + gradient)
        direction = gradient + momentum * buffer if self.nesterov else buffer
        filters = variable.shape[-1]
        steps = self.newton_schulz_steps
        flat = ops.cast(ops.reshape(direction, (-1, filters)), self.newton_schulz_dtype)
        update = ops.reshape(ops.cast(orthogonalize(flat, steps), dtype), variable.shape)
        norm = ops.sqrt(ops.sum(ops.square(variable))) + 1e-12
        rate = ops.cast(learning_rate, dtype) * self.muon_rate_ratio
        self.assign(variable, variable * (filters**0.5 / norm) - rate * update)

    def get_config(self):
        return {
            **super().get_config(),
            "muon_rate_ratio": self.muon_rate_ratio,
            "muon_momentum": self.muon_momentum,
            "newton_schulz_steps": self.newton_schulz_steps,
            "newton_schulz_dtype": self.newton_schulz_dtype,
        }


class Lookahead(keras.callbacks.Callback):
    """Lookahead weight averaging as airbench does it (Zhang et al. 2019): every `every`
    steps, slow weights move towards the trained ("fast") ones, `slow = decay * slow +
    (1 - decay) * fast`, and the fast weights restart from them; at the end of training
    (after one more synchronisation if steps are pending) the model keeps the slow
    weights. The decay grows over the run,
    `decay = base**every * (step / total_steps)**3`, so early steps are not averaged.
    Batch-norm moving statistics are averaged with the weights. The slow weights and the
    step count start at `fit`'s first epoch, after callbacks such as
    `keras.callbacks.BackupAndRestore` have restored the weights: a run started at epoch
    `k` (`initial_epoch`, or a resumed one) counts from `k` epochs of steps.

    Args:
        total_steps: training steps of the whole run (the schedule's `total_steps`).
        every: steps between synchronisations (airbench 5).
        base: per-step decay at the end of the run (airbench 0.95).
        clock: the step the run has reached as its schedule counts them, where that is
            not the steps trained (a run paced to a time: `ScheduleOverTime.clock`).

    Example:
    >>> callback = Lookahead(total_steps=100)
    >>> round(callback.decay(100), 4), callback.decay(0)
    (0.7738, 0.0)
    """

    def __init__(self, total_steps: int, every: int = 5, base: float = 0.95, clock=None):
        super().__init__()
        self.total_steps = _checks.positive_int("total_steps", total_steps)
        self.every = _checks.positive_int("every", every)
        self.base = _checks.rate("base", base)
        self.clock = clock

    def decay(self, step: int) -> float:
        return self.base**self.every * min(step / self.total_steps, 1.0) ** 3

    def _averaged(self):
        return [w for w in self.model.weights if "float" in str(w.dtype)]

    def _reached(self) -> float:
        return self.step if self.clock is None else self.clock()

    def on_train_begin(self, logs=None):
        self.slow = None  # taken at the first epoch, once restored weights are in place

    def on_epoch_begin(self, epoch, logs=None):
        if self.slow is None:
            steps = self.params.get("steps")
            if epoch and steps is None:
                raise ValueError(
                    f"Lookahead cannot start at epoch {epoch} of data of unknown length: "
                    "give the dataset a known cardinality (`assert_cardinality`)."
                )
            self.step = epoch * steps if epoch else 0
            self.slow = [ops.copy(w.value) for w in self._averaged()]

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step % self.every == 0:
            self._synchronise(self.decay(self._reached()))

    def on_train_end(self, logs=None):
        if self.step % self.every:  # steps since the last synchronisation count once more
            self._synchronise(self.decay(self._reached()))
        self._synchronise(1.0)  # keep the slow weights

    def _synchronise(self, decay: float):
        for index, (slow, fast) in enumerate(zip(self.slow, self._averaged(), strict=True)):
            slow = decay * slow + (1.0 - decay) * fast.value
            self.slow[index] = slow
            fast.assign(slow)


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
