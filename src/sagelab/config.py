"""Config helpers that run before any heavy import or data read.

Every user mistake ends as a :class:`ConfigError` that names the key (or the
file) and what would be accepted; the CLI prints it as one line and exits
with status 2, never with a traceback. Types and per-key value checks live in
:mod:`sagelab.schema`; this module holds the error, the ``${root:}`` resolver,
config-group listing and the checkpoint folder's key.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CORE_MODES = ("train", "evaluate", "predict", "compare")


class ConfigError(ValueError):
    """A user-facing configuration problem: ``key`` is the dotted config key or file at fault."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


def _register_resolvers() -> None:
    if not OmegaConf.has_resolver("root"):
        # ${root:} -- the project folder, so data/ and mlruns/ resolve from any cwd
        OmegaConf.register_new_resolver("root", lambda: str(PROJECT_ROOT))


_register_resolvers()


def group_options(folder: Path) -> list[str]:
    """The options of a Hydra config group folder, as ``group=<option>`` names them (nested: ``hpo/<name>``).

    A file or folder whose name starts with ``_`` (``hpo/_base.yaml``) is a building block that options pull in
    through their defaults list, not an option.
    """
    options = (p.relative_to(folder).with_suffix("") for p in Path(folder).rglob("*.yaml"))
    return sorted(o.as_posix() for o in options if not any(part.startswith("_") for part in o.parts))


def resolved(cfg: DictConfig) -> dict[str, Any]:
    """The run's config as plain data, interpolations resolved, Hydra's own section left out."""
    raw = OmegaConf.to_container(cfg, resolve=False)
    raw.pop("hydra", None)
    return OmegaConf.to_container(OmegaConf.create(raw), resolve=True)


def default_checkpoint_dir(cfg: DictConfig) -> Path:
    """``outputs/checkpoints/<task>/<hash>``: the hash covers the resolved config minus ``checkpoint.run_only_keys``
    and ``task.run_only_keys``.

    Hashing what will be trained, rather than the command line, means the same setup finds its checkpoint however
    it is spelled (``optim.lr=5e-5`` or the default 5e-5; ``mode=train`` or ``mode=evaluate``), and a code
    change that alters a default starts a fresh folder instead of resuming an incompatible checkpoint.
    """
    plain = resolved(cfg)
    for key in [*(cfg.checkpoint.get("run_only_keys") or []), *(cfg.task.get("run_only_keys") or [])]:
        *parents, leaf = str(key).split(".")
        node = plain
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    text = json.dumps(plain, sort_keys=True, default=str)
    return PROJECT_ROOT / "outputs" / "checkpoints" / str(cfg.task.name) / hashlib.sha1(text.encode()).hexdigest()[:8]


def check_file(key: str, path: str | Path, what: str = "file") -> Path:
    path = Path(path)
    if not path.exists():
        raise ConfigError(key, f"the {what} '{path}' does not exist.")
    return path


def check_cross_keys(cfg: DictConfig) -> None:
    """Checks that span two keys (one field's check cannot see the other)."""
    resume = str(OmegaConf.select(cfg, "checkpoint.resume", default="auto"))
    if resume not in ("auto", "never") and not Path(resume).exists():
        raise ConfigError("checkpoint.resume", f"is '{resume}': use auto, never, or an existing .ckpt path.")
