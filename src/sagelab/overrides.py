"""The command line against the typed schema, before Hydra composes anything.

Hydra would refuse a wrong type or an unknown key too, but in a multi-paragraph report with exit 1 (and a
wrong type in an untyped task block not at all). Checked here, each costs one line naming the key, exit 2.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sagelab.config import ConfigError
from sagelab.schema import GROUPS, SagelabConfig, check_values, schema_error, typed


def check_overrides(argv: list[str]) -> None:
    """Command-line ``key=value`` overrides of typed keys, checked against the schema before Hydra runs."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    args = [a for a in argv if not a.startswith("-") and "=" in a]
    try:
        overrides = OverridesParser.create().parse_overrides(args)
    except HydraException as err:
        raise ConfigError("command line", str(err).splitlines()[0]) from None
    root = OmegaConf.structured(SagelabConfig)
    known = {spec.name for spec in fields(SagelabConfig)}
    for override in overrides:
        key = override.key_or_group
        head = key.split(".")[0]
        if override.is_delete() or "/" in key or head in ("task", "model", "callbacks", "hydra") or key in GROUPS:
            continue  # groups (hydra/launcher=joblib) and blocks checked once composed
        if head not in known:
            raise ConfigError(key, f"no such key; top-level keys are {', '.join(sorted(known))}.")
        values = list(override.sweep_iterator()) if override.is_sweep_override() else [override.value()]
        for value in values:
            try:
                OmegaConf.update(root, key, value, merge=True, force_add=override.is_add())
            except OmegaConfBaseException as err:
                raise schema_error(err) from None
            # values whose check needs no other key (optim.lr=-1) fail here too, before Hydra composes;
            # an interpolation (${hydra:...}) is checked once it can be resolved
            if not (isinstance(value, str) and "${" in value):
                check_values(OmegaConf.masked_copy(root, [head]), SagelabConfig)


def check_task_overrides(argv: list[str], conf_dir: Path) -> None:
    """``task.<key>=value`` against the selected task's ``config_class``: an unknown key or a wrong type is one
    line naming it (Hydra refuses an unknown key in a paragraph, and composes a wrong type unchecked).

    Skipped where the command line alone does not say which task runs (a sweep over tasks, ``+experiment=``,
    which may pick the task and add keys) or the task has no schema; :meth:`Task.validate` checks the composed
    block anyway.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.utils import get_class

    args = [a for a in argv if not a.startswith("-") and "=" in a]
    if not any(a.lstrip("+").startswith("task.") for a in args) or any("experiment=" in a for a in args):
        return
    chosen = [a.lstrip("+").partition("=")[2] for a in args if a.lstrip("+").startswith("task=")]
    if not chosen:
        defaults = OmegaConf.to_container(OmegaConf.load(conf_dir / "config.yaml")).get("defaults", [])
        chosen = [str(d["task"]) for d in defaults if isinstance(d, dict) and "task" in d]
    path = conf_dir / "task" / f"{chosen[0]}.yaml" if len(chosen) == 1 else None
    if path is None or "," in chosen[0] or not path.is_file():
        return
    block = OmegaConf.load(path)
    if "@package _global_" in path.read_text():  # a task file that also sets trainer/optim defaults
        block = block.get("task") or OmegaConf.create()
    try:
        schema = getattr(get_class(str(block.get("_target_"))), "config_class", None)
    except Exception:  # noqa: BLE001 -- a task that does not import is dispatch's to report, with its key
        return
    if schema is None:
        return
    task_args = [a for a in args if a.lstrip("+").startswith("task.")]
    for override in OverridesParser.create().parse_overrides(task_args):
        values = list(override.sweep_iterator()) if override.is_sweep_override() else [override.value()]
        for value in values:
            single = OmegaConf.create()
            OmegaConf.update(single, override.key_or_group[len("task."):], value, force_add=True)
            try:
                check_values(typed(single, schema, "task."), schema, "task.")
            except ConfigError as err:
                if err.message.startswith("no such key"):
                    raise ConfigError(err.key, f"no such key in task {chosen[0]} (a typo?).") from None
                raise
