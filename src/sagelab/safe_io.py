"""Files that must survive a kill, and files that must not run code.

* :func:`atomic_write`: the bytes go to ``<name>.partial`` beside the target, are fsynced, and the file is
  renamed over the target (then the folder is fsynced, so the rename itself survives a power cut). A kill
  mid-write leaves the previous file; a failed write (full disk) removes the ``.partial`` and names the target.
* :func:`load_checkpoint`: ``torch.load(weights_only=True)`` for every checkpoint a user or an MLflow store hands
  in. A pickle that needs more than tensors and plain data could run code, so it is refused with one line.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import IO, Any, Callable

from sagelab.config import ConfigError


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    path = Path(path)
    partial = path.with_name(f"{path.name}.partial")
    try:
        with open(partial, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno is not None and err.filename in (None, str(partial)):
            # a write error carries no path (or the temporary one): the user knows the file by its real name
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a folder be opened
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def load_checkpoint(path: str | Path, key: str) -> dict[str, Any]:
    """The checkpoint at ``path`` as tensors and plain data, or a :class:`ConfigError` on ``key``."""
    import torch

    try:
        blob = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # pickle.UnpicklingError for anything but tensors and plain data
        raise ConfigError(key, f"'{path}' is not a checkpoint sagelab can load safely: {_why(err)}.") from None
    if not isinstance(blob, dict):
        raise ConfigError(key, f"'{path}' holds a {type(blob).__name__}, not a checkpoint.")
    return blob


def _why(err: Exception) -> str:
    text = str(err).strip()
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if refused:  # torch's own message goes on to explain how to load it unsafely; we do not
        return f"its pickle calls {refused.group(1)}, and only tensors and plain data are unpickled"
    if isinstance(err, EOFError) or not text:
        return "the file is empty or cut short"
    return f"{type(err).__name__}: {text.splitlines()[0][:200]}"
