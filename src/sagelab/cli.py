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
        check_task_keys(argv, conf_dir)
    except ConfigError as err:
        fail(err)


def check_task_keys(argv: list[str], conf_dir: Path) -> None:
    """``task.<key>=value`` for a key the selected task's file does not have: Hydra would refuse it in its own
    multi-paragraph words (exit 1), so name it here. Values and ``+task.<key>`` are the task schema's to judge,
    after composing; with an ``experiment`` (which may pick the task and add keys) Hydra has the last word."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType
    from omegaconf import OmegaConf

    overrides = OverridesParser.create().parse_overrides([a for a in argv if not a.startswith("-") and "=" in a])
    keys = [o.key_or_group for o in overrides if o.key_or_group.startswith("task.") and o.type == OverrideType.CHANGE]
    chosen = {o.key_or_group: o for o in overrides}
    task = chosen.get("task")
    if not keys or "experiment" in chosen or (task is not None and task.is_sweep_override()):
        return
    if task is not None:
        name = str(task.value())
    else:
        defaults = OmegaConf.to_container(OmegaConf.load(conf_dir / "config.yaml")).get("defaults", [])
        name = next((str(d["task"]) for d in defaults if isinstance(d, dict) and "task" in d), "")
    path = conf_dir / "task" / f"{name}.yaml"
    if not path.is_file():
        return
    block = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    if "@package _global_" in path.read_text():
        block = block.get("task") or {}
    for key in keys:
        node: object = block
        for part in key.split(".")[1:]:
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise ConfigError(key, f"no such key in task {name} (a typo?).")


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
