"""``sagelab_state.json`` beside a run's checkpoints: which MLflow run owns them and whether training completed.

Written atomically (:func:`sagelab.safe_io.atomic_write`), so a kill mid-write leaves the previous state; a
state file that cannot be read (empty or truncated by a full disk, edited by hand) is reported and treated as
absent, which starts a fresh run instead of failing. ``completed`` is written only once the whole training
command has ended well, so a run killed in its final evaluation resumes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from sagelab.safe_io import atomic_write, load_checkpoint

STATE_FILE = "sagelab_state.json"


def read_state(folder: Path) -> dict[str, Any] | None:
    path = Path(folder) / STATE_FILE
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
        if isinstance(state, dict):
            return state
        problem = "is not a JSON object"
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as err:
        empty = isinstance(err, json.JSONDecodeError) and not err.doc.strip()
        problem = "is empty" if empty else f"cannot be read ({type(err).__name__})"
    print(f"sagelab: {path} {problem}; starting a fresh run instead of resuming.", file=sys.stderr)
    return None


def write_state(folder: Path, **state: Any) -> None:
    atomic_write(Path(folder) / STATE_FILE, lambda handle: handle.write(json.dumps(state).encode()))


def resume_point(mode: str, policy: str, folder: Path, announce: bool) -> tuple[Path | None, str | None]:
    """(checkpoint, MLflow run id) to continue, if this training command was interrupted before."""
    if mode != "train" or policy == "never":
        return None, None
    if policy != "auto":  # a file the user hands in is checked before Lightning unpickles it
        load_checkpoint(policy, "checkpoint.resume")
        return Path(policy), None
    state = read_state(folder)
    last = Path(folder) / "last.ckpt"
    if state and not state.get("completed") and last.exists():
        if announce:
            print(f"resuming from {last} (MLflow run {state.get('run_id')})", file=sys.stderr)
        return last, state.get("run_id")
    return None, None
