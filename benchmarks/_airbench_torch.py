"""airbench94's network and training method (Jordan 2024, "94% on CIFAR-10 in 3.29 seconds
on a single GPU"), written again here for CPUs: PyTorch eager, bfloat16 autocast,
channels_last, every core. The reference of `cifar10_time_to_accuracy.py --reference`.

What it keeps of airbench94: the network (a frozen 2x2 whitening convolution set from the
first 5,000 training images' patches, three conv-pool-norm-GELU groups of 64/256/256
filters, identity-initialised kernels, batch norms with frozen scales and momentum 0.6, max
pooling, a linear head scaled by 1/9); the recipe (batches of 1,024, Nesterov SGD at 11.5
and weight decay 0.0153 per 1,024 examples in its decoupled form, norm shifts 64x faster,
a triangular schedule from 0.2 up to 1 at 23% and down to 0.07, label smoothing 0.2, the
whitening bias trained for the first 3 epochs only, Lookahead every 5 steps from epoch 3,
9.9 epochs); the data (alternating flips: a random half mirrored once, then all mirrored
every other epoch; random 2-pixel shifts of reflect-padded images) and its 6-view
test-time augmentation. What it changes: the GPU's float16 network becomes bfloat16
autocast on the CPU, and the data are the toolkit's arrays, standardised with their own
channel statistics. PyTorch is needed for this benchmark only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional

EPOCHS, BATCH, WIDTHS = 9.9, 1024, (64, 256, 256)
LR, WEIGHT_DECAY, MOMENTUM, BIAS_SCALER = 11.5, 0.0153, 0.85, 64.0
LOOKAHEAD_FROM, LOOKAHEAD_EVERY, LOOKAHEAD_BASE, LOOKAHEAD_POWER = 3, 5, 0.95, 3.0
WHITEN_BIAS_EPOCHS, LABEL_SMOOTHING, SHIFT = 3, 0.2, 2


class Scale(nn.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


def batch_norm(channels: int) -> nn.BatchNorm2d:
    """airbench's norm: PyTorch momentum 0.4 (0.6 kept), eps 1e-12, the scale frozen at 1."""
    layer = nn.BatchNorm2d(channels, momentum=0.4, eps=1e-12)
    layer.weight.requires_grad_(False)
    return layer


def conv(channels_in: int, channels: int) -> nn.Conv2d:
    """A 3x3 convolution whose first `channels_in` filters start as the identity."""
    layer = nn.Conv2d(channels_in, channels, 3, padding="same", bias=False)
    with torch.no_grad():
        nn.init.dirac_(layer.weight[: min(channels_in, channels)])
    return layer


def airbench94_net() -> nn.Sequential:
    """airbench94's network (its whitening layer first, frozen; `init_whitening` sets it)."""

    def group(channels_in, channels):
        return [conv(channels_in, channels), nn.MaxPool2d(2), batch_norm(channels), nn.GELU(),
                conv(channels, channels), batch_norm(channels), nn.GELU()]  # fmt: skip

    whiten = nn.Conv2d(3, 24, 2, bias=True)
    whiten.weight.requires_grad_(False)
    with torch.no_grad():
        whiten.bias.zero_()
    layers = [whiten, nn.GELU(), *group(24, WIDTHS[0]), *group(WIDTHS[0], WIDTHS[1])]
    layers += [*group(WIDTHS[1], WIDTHS[2]), nn.MaxPool2d(3), nn.Flatten()]
    layers += [nn.Linear(WIDTHS[2], 10, bias=False), Scale(1 / 9)]
    return nn.Sequential(*layers)


def init_whitening(layer: nn.Conv2d, images: torch.Tensor, eps: float = 5e-4) -> None:
    """Set `layer` (2x2, 24 filters) to whiten the 2x2 patches of `images` (NCHW): the
    patch covariance's eigenvectors over the square roots of their eigenvalues, and their
    negatives."""
    patches = images.unfold(2, 2, 1).unfold(3, 2, 1).transpose(1, 3).reshape(-1, 3 * 4)
    covariance = patches.T @ patches / len(patches)
    values, vectors = torch.linalg.eigh(covariance)
    scaled = vectors.T.reshape(-1, 3, 2, 2) / torch.sqrt(values.view(-1, 1, 1, 1) + eps)
    with torch.no_grad():
        layer.weight.copy_(torch.cat((scaled, -scaled)))


def shifted(padded: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Each image of `padded` (NCHW, `SHIFT` pixels of padding) cropped at a random offset."""
    offsets = torch.randint(0, 2 * SHIFT + 1, (len(padded), 2), generator=generator)
    out = torch.empty(len(padded), padded.shape[1], size, size, dtype=padded.dtype)
    for dy in range(2 * SHIFT + 1):
        for dx in range(2 * SHIFT + 1):
            chosen = (offsets[:, 0] == dy) & (offsets[:, 1] == dx)
            out[chosen] = padded[chosen, :, dy : dy + size, dx : dx + size]
    return out


def tta_logits(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """airbench's 6-view test-time augmentation: half the image and its mirror, half the
    pair shifted a pixel up-left and down-right (reflect-padded)."""

    def mirrored(x):
        return 0.5 * model(x) + 0.5 * model(x.flip(-1))

    padded = functional.pad(images, (1,) * 4, "reflect")
    size = images.shape[-1]
    shifts = [padded[:, :, 0:size, 0:size], padded[:, :, 2 : size + 2, 2 : size + 2]]
    return 0.5 * mirrored(images) + 0.25 * (mirrored(shifts[0]) + mirrored(shifts[1]))


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Test accuracy with the 6-view TTA, in batches of 2,000."""
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = torch.cat([tta_logits(model, x).float() for x in images.split(2000)])
    model.train()
    return float((logits.argmax(1) == labels).float().mean())


def train(
    x_train: np.ndarray,
    y_train: np.ndarray,
    after_epoch: Callable[[nn.Module, int, float], None],
    *,
    epochs: float = EPOCHS,
    seed: int = 0,
) -> nn.Module:
    """Train airbench94's network on `x_train` (standardised NHWC float32) with its method;
    `after_epoch(model, epoch, training_seconds)` is called after each epoch, outside the
    timed training (the last epoch is the fraction `epochs` leaves)."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    images = torch.from_numpy(x_train).permute(0, 3, 1, 2).contiguous()
    labels = torch.from_numpy(y_train.astype("int64"))
    model = airbench94_net().to(memory_format=torch.channels_last)
    started = time.perf_counter()
    init_whitening(model[0], images[:5000])
    flipped = torch.rand(len(images), generator=generator) < 0.5  # alternating flips
    images = torch.where(flipped.view(-1, 1, 1, 1), images.flip(-1), images)
    padded = functional.pad(images, (SHIFT,) * 4, "reflect")
    steps_per_epoch = len(images) // BATCH  # airbench drops the last partial batch
    total = math.ceil(steps_per_epoch * epochs)
    # The decoupled rate and decay, undone for PyTorch's SGD over a summed loss.
    kilostep = 1024 * (1 + 1 / (1 - MOMENTUM))
    lr, decay = LR / kilostep, WEIGHT_DECAY * BATCH / kilostep
    shifts = [p for name, p in model.named_parameters() if p.requires_grad and p.ndim == 1
              and name != "0.bias"]  # fmt: skip
    others = [p for name, p in model.named_parameters() if p.requires_grad and p.ndim > 1]
    whiten_bias = model[0].bias
    groups = [
        {"params": shifts, "lr": lr * BIAS_SCALER, "weight_decay": decay / (lr * BIAS_SCALER)},
        {"params": others + [whiten_bias], "lr": lr, "weight_decay": decay / lr},
    ]
    optimizer = torch.optim.SGD(groups, momentum=MOMENTUM, nesterov=True)
    peak_step = int(0.23 * total)
    ramp = np.interp(np.arange(total + 1), [0, peak_step, total], [0.2, 1.0, 0.07])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: ramp[min(i, total)])
    loss_fn = nn.CrossEntropyLoss(label_smoothing=LABEL_SMOOTHING, reduction="sum")
    slow, step, seconds = None, 0, time.perf_counter() - started
    for epoch in range(math.ceil(epochs)):
        started = time.perf_counter()
        whiten_bias.requires_grad_(epoch < WHITEN_BIAS_EPOCHS)
        epoch_images = shifted(padded, images.shape[-1], generator)
        if epoch % 2:
            epoch_images = epoch_images.flip(-1)
        order = torch.randperm(len(images), generator=generator)
        for i in range(steps_per_epoch):
            chosen = order[i * BATCH : (i + 1) * BATCH]
            x = epoch_images[chosen].contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = loss_fn(model(x), labels[chosen])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            if epoch >= LOOKAHEAD_FROM and step % LOOKAHEAD_EVERY == 0:
                if slow is None:
                    slow = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    base = LOOKAHEAD_BASE**LOOKAHEAD_EVERY
                    _lookahead(model, slow, base * (step / total) ** LOOKAHEAD_POWER)
            if step >= total:
                break
        if slow is not None:
            _lookahead(model, slow, 1.0)  # the slow weights at each epoch's end
        seconds += time.perf_counter() - started
        after_epoch(model, epoch + 1, seconds)
    return model


def _lookahead(model: nn.Module, slow: dict, decay: float) -> None:
    """Move the slow weights towards the model's by `1 - decay` and restart from them."""
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                slow[key].lerp_(value, 1 - decay)
                value.copy_(slow[key])
