"""Writing state files so that a kill at any moment leaves the old file or the new one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder and a rename.

    Example:
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "state.json"
    >>> write_text_atomically(target, "{}")
    >>> target.read_text()
    '{}'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


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
