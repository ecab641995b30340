"""compose -> validate -> dispatch. Nothing task-specific lives here.

Before Hydra composes, the command line is checked against the config groups and the typed schema; after,
the composed config's value checks and the task's own contract run. All of it happens before torch or any
task module is imported, so a typo costs a fraction of a second and ends in one line naming the key, never
in a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig, open_dict

from sagelab.config import ConfigError, check_cross_keys, default_checkpoint_dir, group_options

CORE_MODES = ("train", "evaluate", "predict", "compare")


def fail(err: ConfigError) -> None:
    print(f"sagelab: bad config: {err.key}: {err.message}", file=sys.stderr)
    sys.exit(2)


def check_command_line(argv: list[str], conf_dir: Path) -> None:
    """Group options that conf/ lacks and values of the wrong type: one line and exit 2, before Hydra.

    (Hydra would say the same in a multi-paragraph message with its config search path.)
    """
    from sagelab.schema import check_overrides

    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        group, _, options = arg.lstrip("+~").partition("=")
        folder = conf_dir / group
        if "." in group or not folder.is_dir():
            continue
        known = group_options(folder)
        for option in options.split(","):  # a --multirun sweep lists several
            if option and option not in known:
                fail(ConfigError(group, f"there is no option '{option}'; choose one of {', '.join(known)}."))
    try:
        check_overrides(argv)
        check_task_overrides(argv, conf_dir)
    except ConfigError as err:
        fail(err)


def check_task_overrides(argv: list[str], conf_dir: Path) -> None:
    """``task.<key>=value`` against the selected task's ``config_class``: an unknown key or a wrong type is one
    line naming it (Hydra refuses an unknown key in a paragraph, and composes a wrong type unchecked).

    Skipped where the command line alone does not say which task runs (a sweep over tasks, ``+experiment=``,
    which may pick the task and add keys) or the task has no schema; :meth:`Task.validate` checks the composed
    block anyway.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.utils import get_class
    from omegaconf import OmegaConf

    from sagelab.schema import check_values, typed

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
            check_values(typed(single, schema, "task."), schema, "task.")


def dispatch(cfg: DictConfig) -> dict:
    from sagelab.schema import check_values

    check_values(cfg)
    check_cross_keys(cfg)
    mode = str(cfg.mode)
    if mode == "compare":
        from sagelab.compare import compare_runs

        return compare_runs(cfg)
    if cfg.hpo.name != "none":
        from sagelab.hpo.study import run_study

        return run_study(cfg)

    from hydra.utils import get_class

    task = get_class(str(cfg.task._target_))(cfg)
    if mode not in task.modes():
        raise ConfigError("mode", f"is '{mode}'; task {task.name} supports {', '.join(task.modes())}"
                          f"{' (and compare)' if mode not in CORE_MODES else ''}.")
    task.validate()
    if cfg.checkpoint.get("dir") is None:
        with open_dict(cfg):
            cfg.checkpoint.dir = str(default_checkpoint_dir(cfg))

    from sagelab.runner import Runner

    return Runner(cfg, task).run()


def main(cfg: DictConfig) -> dict | None:
    try:
        return dispatch(cfg)
    except ConfigError as err:
        fail(err)
        return None
