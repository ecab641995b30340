"""Progress bars for the waits that are not a Lightning loop: embedding, permutation tests, feature encoding.

One switch for the whole command: the runner turns bars off under ``trainer.enable_progress_bar=false``, and
they are off where ``CI`` is set; otherwise tqdm shows them on a terminal (count, rate, ETA) and stays quiet
when output goes to a file.
"""

from __future__ import annotations

import os
from typing import Any, Iterable

_enabled = True


def configure(enabled: bool) -> None:
    global _enabled
    _enabled = bool(enabled)
    if not _enabled:  # Hugging Face datasets' own bars (tokenising with Dataset.map), read when it is imported
        os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"


def enabled() -> bool:
    return _enabled and not os.environ.get("CI")


def bar(iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str, unit: str = "it") -> Any:
    """A tqdm bar over ``iterable`` (or a manual one to ``update``), or a silent stand-in when bars are off."""
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=None if enabled() else True,
                dynamic_ncols=True, leave=False)
