"""Time series in the UCR/UEA archive's formats as a `Dataset` of `(n, steps, channels)`
float32 arrays: `.ts` (univariate or multivariate, equal or unequal length, string or
numeric labels) and the UCR archive's `.tsv` (label first, tab-separated values).

A dataset is a folder holding `<Name>_TRAIN.ts` and `<Name>_TEST.ts` (or `.tsv`), as the
archive ships it. A univariate series is z-normalised (the UCR archive's practice, so that
a class is told by its shape, not its level); multivariate series keep their values, whose
levels across dimensions carry information (per-series z-normalisation costs
JapaneseVowels 23 points), and are standardised per channel over the training set like
every dataset. Unequal lengths are resampled by linear
interpolation to the longest training series: the networks' convolutions and batch norms
have no masks, and zero padding would let global pooling average the padding in, so
that a series' length, not its shape, could decide its class.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from keras_residual import _checks
from keras_residual.data.dataset import DataError, Dataset

SERIES_EXTENSIONS = (".ts", ".tsv")
_MISSING = ("?", "nan", "NaN", "")


def _number(text: str, where: str) -> float:
    text = text.strip()
    if text in _MISSING:
        raise DataError(
            f"{where}: a missing value ({text or 'empty'!r}); the toolkit does not impute: "
            "fill or drop the series first."
        )
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{where}: {text[:30]!r} is not a number.") from None
    if not np.isfinite(value):
        raise DataError(f"{where}: {text!r} is not a finite number.")
    return value


def _flag(header: dict, key: str, path: Path, line: int) -> bool:
    value = header.get(key, "false").lower()
    if value not in ("true", "false"):
        raise DataError(f"{path}, line {line}: @{key} must be true or false, got {value!r}.")
    return value == "true"


def read_ts(path: str | os.PathLike) -> tuple[list[np.ndarray], list[str], tuple[str, ...]]:
    """The series (`(steps, dimensions)` float arrays), labels and declared classes of a
    `.ts` file, or a DataError naming the file and line.

    Args:
        path: a `.ts` file of the UCR/UEA archive's format, with `@classLabel true ...`.

    Example:
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "Toy_TRAIN.ts"
    >>> _ = path.write_text("@problemName Toy\\n@classLabel true a b\\n@data\\n1,2,3:4,5,6:a\\n")
    >>> series, labels, classes = read_ts(path)
    >>> series[0].shape, labels, classes
    ((3, 2), ['a'], ('a', 'b'))
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8", errors="strict").splitlines()
    except FileNotFoundError:
        raise DataError(f"{path} does not exist.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path} cannot be read as a .ts text file ({error}).") from None
    header, classes, data_line = {}, None, None
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if not text.startswith("@"):
            raise DataError(
                f"{path}, line {number}: values before @data; a .ts header is lines of "
                "'@tag value' ending with '@data'."
            )
        tag, _, value = text[1:].partition(" ")
        tag = tag.lower()
        if tag == "data":
            data_line = number
            break
        if tag == "classlabel":
            words = value.split()
            if not words or words[0].lower() != "true" or len(words) < 2:
                raise DataError(
                    f"{path}, line {number}: '@classLabel true <class> <class> ...' is needed "
                    f"for classification, got {text!r}."
                )
            classes = tuple(words[1:])
        header[tag] = value.strip()
    if data_line is None:
        raise DataError(f"{path}: no '@data' line; is it a .ts file of the UCR/UEA archive?")
    if classes is None:
        raise DataError(f"{path}: no '@classLabel true ...' line before @data.")
    if _flag(header, "timestamps", path, data_line):
        raise DataError(f"{path}: @timeStamps true is not supported; write plain values.")
    dimensions = header.get("dimensions")
    if dimensions is not None and not dimensions.isdigit():
        raise DataError(f"{path}: @dimensions must be a positive integer, got {dimensions!r}.")
    dimensions = int(dimensions) if dimensions else None
    if _flag(header, "univariate", path, data_line) and dimensions not in (None, 1):
        raise DataError(f"{path}: @univariate true but @dimensions {dimensions}.")
    series, labels = [], []
    for number, line in enumerate(lines[data_line:], data_line + 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        *fields, label = text.split(":")
        where = f"{path}, line {number}"
        if not fields:
            raise DataError(f"{where}: expected values, ':' and the class label.")
        dimensions = dimensions or len(fields)
        if len(fields) != dimensions:
            raise DataError(
                f"{where}: {len(fields)} dimensions, but the file has {dimensions} (@dimensions "
                "or its first series)."
            )
        label = label.strip()
        if label not in classes:
            raise DataError(
                f"{where}: class label {label!r} is not among those @classLabel declares "
                f"({', '.join(classes)})."
            )
        values = [[_number(v, where) for v in field.split(",")] for field in fields]
        lengths = {len(v) for v in values}
        if len(lengths) > 1:
            raise DataError(f"{where}: its dimensions have different lengths {sorted(lengths)}.")
        series.append(np.asarray(values, "float64").T)
        labels.append(label)
    if not series:
        raise DataError(f"{path}: no series after @data.")
    return series, labels, classes


def read_tsv(path: str | os.PathLike) -> tuple[list[np.ndarray], list[str], None]:
    """The series and labels of a UCR archive `.tsv` file (each line: the label, then the
    values, tab-separated; trailing NaNs pad shorter series); no declared classes.

    Args:
        path: the `.tsv` file.

    Example:
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "Toy_TRAIN.tsv"
    >>> _ = path.write_text("1\\t0.5\\t0.7\\tNaN\\n2\\t0.1\\t0.2\\t0.3\\n")
    >>> series, labels, _ = read_tsv(path)
    >>> [s.shape for s in series], labels
    ([(2, 1), (3, 1)], ['1', '2'])
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"{path} does not exist.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path} cannot be read as a .tsv text file ({error}).") from None
    series, labels = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        label, *fields = line.strip().split("\t")
        while fields and fields[-1].strip() in _MISSING:  # padding of a shorter series
            fields.pop()
        where = f"{path}, line {number}"
        if not fields:
            raise DataError(f"{where}: a label without values.")
        values = [_number(v, where) for v in fields]
        series.append(np.asarray(values, "float64")[:, None])
        labels.append(label.strip())
    if not series:
        raise DataError(f"{path} holds no series.")
    return series, labels, None


def _read(path: Path):
    return read_ts(path) if path.suffix == ".ts" else read_tsv(path)


def series_files(path: str | os.PathLike) -> tuple[Path, Path] | None:
    """`(train, test)` files of the archive dataset at `path` (a folder holding
    `<Name>_TRAIN.ts` and `<Name>_TEST.ts`, or `.tsv`, or one of those files), else None.
    A training file without its test file is a DataError.

    Example:
    >>> series_files("no/such/folder") is None
    True
    """
    path = Path(path)
    if path.is_file():
        if path.suffix not in SERIES_EXTENSIONS:
            return None
        folder, name = path.parent, path.stem.removesuffix("_TEST").removesuffix("_TRAIN")
        candidates = [folder / f"{name}_TRAIN{path.suffix}"]
    elif path.is_dir():
        folder = path
        candidates = [folder / f"{path.name}_TRAIN{ext}" for ext in SERIES_EXTENSIONS]
        for ext in SERIES_EXTENSIONS:
            candidates += sorted(folder.glob(f"*_TRAIN{ext}"))
    else:
        return None
    for train in candidates:
        if not train.is_file():
            continue
        test = folder / f"{train.stem.removesuffix('_TRAIN')}_TEST{train.suffix}"
        if not test.is_file():
            raise DataError(
                f"{train} has no test file beside it: the archive's split needs {test.name}."
            )
        return train, test
    return None


def _resample(series: np.ndarray, length: int) -> np.ndarray:
    if len(series) == length:
        return series
    old = np.linspace(0.0, 1.0, len(series))
    new = np.linspace(0.0, 1.0, length)
    return np.stack([np.interp(new, old, column) for column in series.T], axis=1)


def _znormalise(series: np.ndarray) -> np.ndarray:
    std = series.std(axis=0)
    return (series - series.mean(axis=0)) / np.where(std > 1e-8, std, 1.0)


def _stack(series: list[np.ndarray], length: int) -> np.ndarray:
    """The series at `length` steps in one float32 array; univariate ones z-normalised."""
    resampled = [_resample(s, length) for s in series]
    if resampled[0].shape[1] == 1:
        resampled = [_znormalise(s) for s in resampled]
    return np.stack(resampled).astype("float32")


def _class_order(labels: list[str]) -> tuple[str, ...]:
    """Sorted class names, numerically when every label is a number."""
    unique = set(labels)
    try:
        return tuple(sorted(unique, key=float))
    except ValueError:
        return tuple(sorted(unique))


def load_series(
    path: str | os.PathLike,
    *,
    validation_split: float = 0.1,
    seed: int = 0,
) -> Dataset:
    """A UCR/UEA archive dataset (its fixed train/test split) as a `Dataset` of
    `(n, steps, channels)` float32 series (univariate ones z-normalised per series).

    Args:
        path: a folder holding `<Name>_TRAIN.ts` and `<Name>_TEST.ts` (or `.tsv`), or
            one of those files.
        validation_split: the share of the training series held out for validation
            (stratified: each class keeps its share; at least one series a class).
        seed: draws the held-out series.

    Raises:
        DataError: a missing test file, a malformed header, a line with the wrong number
            of dimensions, a missing value, an undeclared class label; the message names
            the file and line.

    Example:
    >>> data = load_series("UCR/GunPoint")  # doctest: +SKIP
    >>> data.x_train.shape[1:], data.class_names  # doctest: +SKIP
    ((150, 1), ('1', '2'))
    """
    _checks.rate("validation_split", validation_split)
    files = series_files(path)
    if files is None:
        raise DataError(
            f"{path} holds no <Name>_TRAIN.ts / <Name>_TEST.ts pair (or .tsv) of the "
            "UCR/UEA archive."
        )
    train_file, test_file = files
    x_train, y_train, classes = _read(train_file)
    x_test, y_test, test_classes = _read(test_file)
    classes = classes or _class_order(y_train)
    unknown = sorted(set(y_test) - set(classes))
    if unknown:
        raise DataError(
            f"{test_file}: class labels {unknown} are not among the training file's "
            f"({', '.join(classes)})."
        )
    channels = {s.shape[1] for s in x_train + x_test}
    if len(channels) > 1:
        raise DataError(
            f"{train_file} and {test_file} have series of {sorted(channels)} dimensions; "
            "every series needs the same number."
        )
    length = max(len(s) for s in x_train)
    index = {name: i for i, name in enumerate(classes)}
    y = np.array([index[label] for label in y_train], "int32")
    x = _stack(x_train, length)
    train, val = _stratified_split(y, validation_split, seed)
    return Dataset(
        train_file.stem.removesuffix("_TRAIN"),
        x[train],
        y[train],
        x[val],
        y[val],
        _stack(x_test, length),
        np.array([index[label] for label in y_test], "int32"),
        tuple(classes),
        source=str(train_file.parent),
        augmentation={},  # flips and shifts are image augmentations
    )


def _stratified_split(labels: np.ndarray, fraction: float, seed: int):
    """Train and validation indices: `fraction` of each class (rounded, at least one where
    the class has two or more series) held out."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        count = round(len(members) * fraction) if fraction else 0
        if fraction and len(members) > 1:
            count = max(1, count)
        count = min(count, len(members) - 1)
        val.extend(members[:count])
        train.extend(members[count:])
    return np.sort(np.array(train, int)), np.sort(np.array(val, int))
