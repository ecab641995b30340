"""Files that must survive a kill.

* :func:`atomic_write`: the bytes go to ``<name>.partial`` beside the target, are fsynced, and the file is
  renamed over the target (then the folder is fsynced, so the rename itself survives a power cut). A kill
  mid-write leaves the previous file; a failed write (full disk) removes the ``.partial`` and names the target.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO, Callable


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

