"""Files a run owns: written so that a kill or a failed write at any moment leaves the old
file or the new one, and held by one live process at a time."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE = ".lock"  # in a run's folder: holds the id of the process writing it
_SUFFIXES = (".weights.h5",)  # suffixes of more than one dot that Keras checks for
PARTIAL = ".partial-"  # in the name of a file being written: `.NAME.partial-XXXX.SUFFIX`


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `path` (same suffix) to write; renamed onto `path` once the
    block ends, with the mode the user's umask gives any new file.

    If the block or the rename fails, the temporary file is removed, the previous `path`
    is left as it was, and an `OSError` names `path` and the reason (disk full, permission
    denied, read-only file system).

    Example:
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "plot.txt"
    >>> with atomic_path(target) as temporary:
    ...     _ = temporary.write_text("done")
    >>> target.read_text(), oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    ('done', True)
    """
    path = Path(path)
    suffix = next((s for s in _SUFFIXES if path.name.endswith(s)), path.suffix)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(
            prefix=f".{path.name.removesuffix(suffix)}{PARTIAL}", suffix=suffix, dir=path.parent
        )
    except OSError as error:
        raise _write_error(path, error) from None
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp creates 0600
        with open(temporary, "rb+") as stream:
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise _write_error(path, error) from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def remove_partial_files(folder: str | os.PathLike) -> None:
    """Delete the files a killed writer left half-written in `folder` (not below it)."""
    for leftover in Path(folder).glob(f".*{PARTIAL}*"):
        leftover.unlink(missing_ok=True)


def _write_error(path: Path, error: OSError) -> OSError:
    """`error` as an OSError whose message names `path`, why, and that nothing was lost."""
    if isinstance(error, _WriteFailed):
        return error
    reason = error.strerror or str(error)
    kept = f"; the previous {path.name} is intact" if path.exists() else ""
    return _WriteFailed(error.errno, f"could not write {path}: {reason}{kept}.")


class _WriteFailed(OSError):
    def __str__(self) -> str:
        return self.strerror


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder and a rename
    (see `atomic_path`).

    Example:
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "state.json"
    >>> write_text_atomically(target, "{}")
    >>> target.read_text()
    '{}'
    """
    with atomic_path(path) as temporary:
        temporary.write_text(text)


class StateError(ValueError):
    """A state file of a run or search folder cannot be read; the message says what to do."""


def read_json(path: str | Path, what: str, way_out: str = "") -> dict:
    """The JSON object in `path`, or a `StateError` naming the file, what it is and `way_out`."""
    path = Path(path)
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        if isinstance(error, FileNotFoundError):
            reason = "is missing"
        elif isinstance(error, OSError):  # permissions, a folder in its place, ...
            reason = "cannot be read"
        else:
            reason = "is truncated or corrupt"
        raise StateError(f"{path} ({what}) {reason} ({error}).{way_out}") from None
    if not isinstance(value, dict):
        raise StateError(
            f"{path} ({what}) is truncated or corrupt (it holds {json.dumps(value)[:40]}, "
            f"not a JSON object).{way_out}"
        )
    return value


def check_output_dir(path: str | os.PathLike, argument: str = "out") -> Path:
    """`path` as a folder that can be created (or already is one) and written into; else a
    ValueError naming `argument`. Creates nothing.

    Example:
    >>> check_output_dir("/dev/null/run")
    Traceback (most recent call last):
    ...
    ValueError: `out` /dev/null/run cannot be a folder: /dev/null is not a folder.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"`{argument}` {path} is a file, not a folder.")
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise ValueError(f"`{argument}` {path} cannot be a folder: {existing} is not a folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"`{argument}` {path}: {existing} is not writable.")
    return path


class FolderBusy(ValueError):
    """Another live process is writing the folder; the message names it."""


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, argument: str = "out") -> Iterator[None]:
    """Hold `folder` (created if need be) as the one process writing it, or raise
    `FolderBusy` with the id of the process that does.

    An advisory `flock` on `folder/.lock`: the kernel releases it when its holder exits,
    however it ends (a `kill -9` leaves no stale lock behind). Processes started with
    `fork` inherit it, so the toolkit starts its trial processes with `spawn`.

    Example:
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with folder_lock(folder):  # doctest: +ELLIPSIS
    ...     with folder_lock(folder):
    ...         pass
    Traceback (most recent call last):
    ...
    keras_residual._files.FolderBusy: ...
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(handle, 32, 0).decode(errors="replace").strip() or "unknown"
            raise FolderBusy(
                f"`{argument}` {folder} is being written by process {holder}, which is still "
                "running: wait for it to end, stop it, or choose another folder."
            ) from None
        os.ftruncate(handle, 0)
        os.pwrite(handle, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(handle)  # releases the lock
