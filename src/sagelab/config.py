"""Config validation that runs before any heavy import or data read.

Every user mistake ends as a :class:`ConfigError` that names the key (or the
file) and what would be accepted; the CLI prints it as one paragraph and exits
with status 2, never with a traceback.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

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


def require(cfg: DictConfig, key: str) -> Any:
    value = OmegaConf.select(cfg, key, default=None)
    if value is None:
        raise ConfigError(key, "is required but not set.")
    return value


def check_positive(cfg: DictConfig, keys: Iterable[str], allow_zero: bool = False) -> None:
    for key in keys:
        value = OmegaConf.select(cfg, key, default=None)
        if value is None:
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ConfigError(key, f"must be a number, got {value!r}.")
        if value < 0 or (value == 0 and not allow_zero):
            bound = "zero or more" if allow_zero else "greater than zero"
            raise ConfigError(key, f"must be {bound}, got {value!r}.")


def check_choice(cfg: DictConfig, key: str, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    value = OmegaConf.select(cfg, key, default=None)
    if value not in allowed:
        raise ConfigError(key, f"is {value!r}; allowed values are {', '.join(map(str, allowed))}.")


def check_file(key: str, path: str | Path, what: str = "file") -> Path:
    path = Path(path)
    if not path.exists():
        raise ConfigError(key, f"the {what} '{path}' does not exist.")
    return path


def check_common(cfg: DictConfig) -> None:
    """Checks shared by every task: numbers in range, known precision, known resume policy."""
    check_positive(cfg, ["optim.lr", "optim.batch_size", "optim.eval_batch_size", "trainer.max_epochs"])
    check_positive(
        cfg,
        ["optim.weight_decay", "optim.warmup_ratio", "checkpoint.every_n_steps", "instance.max_run_s"],
        allow_zero=True,
    )
    warmup = OmegaConf.select(cfg, "optim.warmup_ratio", default=0) or 0
    if warmup > 1:
        raise ConfigError("optim.warmup_ratio", f"is a fraction of training steps (0..1), got {warmup}.")
    accumulate = OmegaConf.select(cfg, "trainer.accumulate_grad_batches", default=1)
    if not isinstance(accumulate, int) or accumulate < 1:
        raise ConfigError("trainer.accumulate_grad_batches", f"must be a whole number >= 1, got {accumulate!r}.")
    check_choice(cfg, "trainer.precision", ("32-true", "32", "bf16-mixed", "bf16-true", "16-mixed", "64-true"))
    resume = str(OmegaConf.select(cfg, "checkpoint.resume", default="auto"))
    if resume not in ("auto", "never") and not Path(resume).exists():
        raise ConfigError("checkpoint.resume", f"is '{resume}': use auto, never, or an existing .ckpt path.")
    for key in ("data.train_limit", "data.eval_limit", "data.holdout"):
        check_positive(cfg, [key])
    holdout = OmegaConf.select(cfg, "data.holdout", default=None)
    if holdout is not None and holdout >= 1 and holdout != int(holdout):
        raise ConfigError("data.holdout", f"is a fraction below 1 or a whole number of examples, got {holdout}.")
