"""`SearchConfig`: everything that defines a search, as one frozen, validated value.

The command line and Python build the same value (`SearchConfig.for_dataset` gives the
defaults both use), `run_search(config)` runs it, and the run's `search.json` keeps it, so
`keras-residual search --out DIR --resume` continues the search it describes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace

from keras_residual import _checks
from keras_residual._checks import parse_duration
from keras_residual.data.series import series_files
from keras_residual.recipes import RECIPES
from keras_residual.search.tuner import TUNERS

# The defaults by the data's default space: MNIST a few-minute job that tries every depth x
# width of its space on a fifth of the data and retrains the best that fits; the others
# spend half the budget on trials and retrain the best in the rest.
_MNIST = {
    "max_trials": 9,
    "time_budget": "4.5m",
    "final_epochs": 3,
    "min_final_epochs": 1,
    "data_fraction": 0.2,
}
_CIFAR = {
    "max_trials": 32,
    "time_budget": "20m",
    "trial_seconds": "auto",
    "final_epochs": "auto",
    "min_final_epochs": 5,  # half the speed presets' 10; networks too slow are skipped
    # Exploring stops once two trials in a row fail to improve on the best (on the preset
    # the search started from: to replace it), and their share goes to the retraining.
    "patience": 2,
    "data_fraction": 1.0,
}
# Time series of the archive: tens to hundreds of series train an epoch in seconds, so a
# trial is tens of epochs and the retraining hundreds, but not more: on a few dozen series
# the series recipe over-trains past about 300 (docs/series.md). The time then left trains
# the best again with other seeds, and the final model averages them: on a few dozen test
# series one network's accuracy moves by points between seeds. (`final_recipe="wang2017"`,
# the published recipe where its 1,500 epochs fit, measured no better: docs/series.md.)
_SERIES = {
    "max_trials": 12,
    "epochs": 30,
    "time_budget": "10m",
    "final_epochs": "auto",
    "min_final_epochs": 60,
    "max_final_epochs": 300,
    "ensemble": 5,
    "data_fraction": 1.0,
}
# With `trial_seconds="auto"`, the trials' share of the budget is planned as this many
# trials of equal time.
TRIALS_PLANNED = 12
DEFAULTS = {"mnist": _MNIST, "fashion_mnist": _MNIST, "cifar10": _CIFAR, "cifar100": _CIFAR}


@dataclass(frozen=True)
class SearchConfig:
    """A search: data, space, budget, tuner, constraints and the final retraining.

    Args:
        dataset: a name of `keras_residual.data.DATASETS`, or the path of a folder of
            class subfolders of images, of a UCR/UEA time-series dataset or of an `.npz`
            of arrays (`load_dataset`).
        data_dir: where the named datasets are (default: `$KERAS_RESIDUAL_DATA`, else
            `keras.datasets`); not part of what makes two searches alike.
        image_size: `N` or `(height, width)` a folder's images are resized to.
        space: search dimensions laid over the data's default space (`resolve_space`):
            a fixed value, a list of choices or a range `{"min": a, "max": b}`.
        tuner: `random`, `bayesian` or `hyperband`.
        max_trials: at most this many trials (not for `hyperband`).
        epochs: epochs a trial trains (`hyperband`: its largest rung).
        trial_seconds: each trial trains its network for this long (seconds or `30s`,
            `2m`): whole epochs, or one more of part of the images each (at least
            `epochs`; `equal_time_plan`), its schedule planned over them, so trials
            compare networks at equal time, as the retraining will use them, not at
            equal epochs, where a larger network leads; `"auto"`: the
            trials' share of the budget over `TRIALS_PLANNED`; None: `epochs` each. Not
            with `hyperband`, whose rungs set the epochs.
        time_budget: the whole search's, final retraining included: seconds or `90s`,
            `10m`, `1h`; None: no budget.
        final_epochs: retrain the best configuration this long (longer when the budget
            leaves time), on all the training images; `"auto"`: as long as the budget
            leaves; 0 keeps the best trial's own weights.
        trial_share: with `final_epochs="auto"`, the budget's share for trials, less
            what the best trial's retraining for `max_final_epochs` needs beyond the rest.
        patience: no trial starts once this many have completed since the best without
            scoring higher, or since the preset the search started from without
            replacing it (`Incumbent`; not for `hyperband`): with `final_epochs="auto"`,
            the time the trials would have taken goes to the retraining. None: trials run
            until `max_trials` or their share of the budget.
        min_final_epochs: with `"auto"`, retrain at least this long; networks too slow
            for it are skipped before they train.
        max_final_epochs: the time a budget leaves extends the retraining to at most
            this many epochs (None: as many as fit).
        final_recipe: a recipe (a name in `RECIPES`) to retrain the best with for
            `final_recipe_epochs`, where those fit the budget's time left (timed on the
            best's network at the recipe's batch size); else, and with None, the
            retraining uses the trials' recipe as `final_epochs` says.
        final_recipe_epochs: the epochs of a `final_recipe` retraining.
        warm_start: the retraining starts from the weights the best trial trained (its
            checkpoint), so the time its trial took is not spent again on the same first
            epochs; False retrains from a fresh initialisation. Copies after the first
            (`ensemble`) start afresh.
        ensemble: with a retraining, the final model averages up to this many copies of
            the best configuration, each retrained with its own seed (`seed`, `seed + 1`,
            ...; `keras_residual.ensemble`): as many as the budget's time left allows
            after the first, all of them without a budget.
        data_fraction: trials train on this share of the training set (the retraining
            and the test use all of it).
        max_params, max_mflops: networks over these are rejected before they train.
        seed: draws the trials (the same seed, the same configurations) and seeds them.
        dtype: the trials' Keras dtype policy; `"auto"` resolves for this machine.

    Example:
    >>> config = SearchConfig.for_dataset("mnist", space={"width": [8, 16]})
    >>> config.time_budget, config.final_epochs, config.space
    ('4.5m', 3, {'width': [8, 16]})
    >>> SearchConfig.from_dict(config.to_dict()) == config
    True
    """

    dataset: str = "mnist"
    data_dir: str | None = None
    image_size: int | tuple[int, int] | None = None
    space: Mapping = field(default_factory=dict)
    tuner: str = "random"
    max_trials: int = 6
    epochs: int = 1
    trial_seconds: str | float | None = None
    time_budget: str | float | None = None
    final_epochs: int | str = 0
    trial_share: float = 0.5
    patience: int | None = None
    min_final_epochs: int = 1
    max_final_epochs: int | None = None
    final_recipe: str | None = None
    final_recipe_epochs: int = 1500
    warm_start: bool = True
    ensemble: int = 1
    data_fraction: float = 1.0
    max_params: int | None = None
    max_mflops: float | None = None
    seed: int = 0
    dtype: str | None = "auto"

    def __post_init__(self):
        object.__setattr__(self, "dataset", os.fspath(self.dataset))
        if self.data_dir is not None:
            object.__setattr__(self, "data_dir", os.fspath(self.data_dir))
        if isinstance(self.image_size, list):
            object.__setattr__(self, "image_size", tuple(self.image_size))
        if not isinstance(self.space, Mapping):
            raise ValueError(f"`space` must be a mapping of dimensions, got {self.space!r}.")
        object.__setattr__(self, "space", dict(self.space))
        for name in ("patience", "final_recipe"):  # "none" as the command line says it
            if getattr(self, name) == "none":
                object.__setattr__(self, name, None)
        _checks.choice("tuner", self.tuner, TUNERS)
        _checks.positive_int("max_trials", self.max_trials)
        _checks.positive_int("epochs", self.epochs)
        auto = self.final_epochs == "auto"
        whole = isinstance(self.final_epochs, int) and not isinstance(self.final_epochs, bool)
        if not auto and not (whole and self.final_epochs >= 0):
            raise ValueError(
                "`final_epochs` must be a non-negative integer or 'auto', got "
                f"{self.final_epochs!r}."
            )
        if not (_checks.finite("trial_share", self.trial_share) and 0 < self.trial_share < 1):
            raise ValueError(f"`trial_share` must lie in (0, 1), got {self.trial_share!r}.")
        if self.patience is not None:
            _checks.positive_int("patience", self.patience)
        _checks.positive_int("min_final_epochs", self.min_final_epochs)
        if self.max_final_epochs is not None:
            _checks.positive_int("max_final_epochs", self.max_final_epochs)
            if self.max_final_epochs < self.min_final_epochs:
                raise ValueError(
                    f"`max_final_epochs` ({self.max_final_epochs}) must be at least "
                    f"`min_final_epochs` ({self.min_final_epochs})."
                )
        if self.final_recipe is not None:
            _checks.choice("final_recipe", self.final_recipe, RECIPES)
        _checks.positive_int("final_recipe_epochs", self.final_recipe_epochs)
        object.__setattr__(self, "warm_start", _checks.flag("warm_start", self.warm_start))
        _checks.positive_int("ensemble", self.ensemble)
        fraction = self.data_fraction
        if not (_checks.finite("data_fraction", fraction) and 0 < fraction <= 1):
            raise ValueError(f"`data_fraction` must lie in (0, 1], got {fraction!r}.")
        budget = self.budget_seconds  # a malformed budget fails here, whatever else is set
        words = {"none": None, "auto": "auto"}  # as the command line says them
        if isinstance(self.trial_seconds, str) and self.trial_seconds.lower() in words:
            object.__setattr__(self, "trial_seconds", words[self.trial_seconds.lower()])
        if self.trial_seconds == "auto" and budget is None:
            raise ValueError(
                "`trial_seconds='auto'` shares out the trials' part of the budget: give a "
                "`time_budget` too, or the trials' seconds."
            )
        if self.trial_seconds not in (None, "auto"):
            parse_duration(self.trial_seconds, "trial_seconds")
        if auto and budget is None:
            raise ValueError(
                "`final_epochs='auto'` retrains for the time the trials leave: give a "
                "`time_budget` too, or a number of final epochs."
            )
        if self.max_params is not None:
            _checks.positive_int("max_params", self.max_params)
        if self.max_mflops is not None:
            _checks.positive("max_mflops", self.max_mflops)
        _checks.non_negative_int("seed", self.seed)

    @property
    def budget_seconds(self) -> float | None:
        return parse_duration(self.time_budget)

    @property
    def seconds_per_trial(self) -> float | None:
        """The seconds each trial trains for (`trial_seconds`, resolved), or None: each
        trains `epochs` (Hyperband always).

        Example:
        >>> SearchConfig.for_dataset("cifar10", time_budget="10m").seconds_per_trial
        25.0
        """
        if self.trial_seconds is None or self.tuner == "hyperband":
            return None
        if self.trial_seconds != "auto":
            return parse_duration(self.trial_seconds, "trial_seconds")
        share = self.trial_share if self.final_epochs == "auto" else 1.0
        return self.budget_seconds * share / TRIALS_PLANNED

    @classmethod
    def for_dataset(cls, dataset: str | os.PathLike = "mnist", **changes) -> SearchConfig:
        """The defaults for `dataset` (MNIST's for the MNIST-like sets, the series defaults
        for a time-series dataset of the UCR/UEA archive's files, CIFAR-10's for the others
        and for images of your own), with `changes` (None values ignored).

        Example:
        >>> SearchConfig.for_dataset("photos/", tuner="hyperband").time_budget
        '20m'
        """
        series = os.fspath(dataset) not in DEFAULTS and series_files(dataset) is not None
        defaults = _SERIES if series else DEFAULTS.get(os.fspath(dataset), _CIFAR)
        given = {k: v for k, v in changes.items() if v is not None}
        return cls(dataset=os.fspath(dataset), **{**defaults, **given})

    def replace(self, **changes) -> SearchConfig:
        """This config with `changes`, validated again."""
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping) -> SearchConfig:
        """The config `to_dict` gave (fields it does not know are refused, naming them)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"SearchConfig has no field {', '.join(map(repr, unknown))}.")
        return cls(**values)
