"""Several trained models as one: the mean of their class probabilities."""

from __future__ import annotations

from collections.abc import Sequence

import keras


def ensemble(models: Sequence[keras.Model], name: str = "ensemble") -> keras.Model:
    """One functional model whose output is the mean of `models`' outputs (their class
    probabilities), each model a sub-model renamed `member_0`, `member_1`, ... (Keras needs
    unique names). It saves, reloads under `safe_mode` and exports as any model; a search
    saves one when its time left trains its best configuration more than once.

    Args:
        models: one or more models with the same input and output shapes; one model is
            returned as it is.
        name: the ensemble's name.

    Example:
    >>> import keras_residual as kr
    >>> members = [kr.resnet_series((32, 1), 3, width=4) for _ in range(2)]
    >>> model = ensemble(members)
    >>> model.output_shape, [layer.name for layer in model.layers[1:]]
    ((None, 3), ['member_0', 'member_1', 'average'])
    """
    models = list(models)
    if not models:
        raise ValueError("`models` must hold at least one model, got none.")
    if len(models) == 1:
        return models[0]
    first = models[0]
    for k, model in enumerate(models[1:], 1):
        for what in ("input_shape", "output_shape"):
            if getattr(model, what) != getattr(first, what):
                raise ValueError(
                    f"`models` must share their {what.replace('_', ' ')}s: model {k} has "
                    f"{getattr(model, what)}, model 0 {getattr(first, what)}."
                )
    for k, model in enumerate(models):
        model.name = f"member_{k}"
    inputs = keras.Input(first.input_shape[1:], name="inputs")
    outputs = keras.layers.Average(dtype="float32", name="average")([m(inputs) for m in models])
    return keras.Model(inputs, outputs, name=name)
