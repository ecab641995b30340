"""compose -> validate -> dispatch. Nothing task-specific lives here.

Validation of everything that can be checked from the config alone runs before
torch or any task module is imported, so a typo costs a fraction of a second
and ends in one paragraph naming the key, never in a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from sagelab.config import CORE_MODES, ConfigError, check_common, check_file, default_checkpoint_dir, group_options


def check_group_choices(argv: list[str], conf_dir: Path) -> None:
    """``group=option`` overrides naming an option that conf/<group>/ lacks: one line, before Hydra composes.

    (Hydra would say the same in a multi-paragraph message with its config search path.)
    """
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
                print(f"sagelab: bad config: {group}: there is no option '{option}'; "
                      f"choose one of {', '.join(known)}.", file=sys.stderr)
                sys.exit(2)


def check_paths(cfg: DictConfig) -> None:
    """``task.check_paths`` lists config keys whose values must be existing local paths."""
    for key in cfg.task.get("check_paths") or []:
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None and str(value).startswith("/"):
            check_file(key, value, "path")


def dispatch(cfg: DictConfig) -> dict:
    check_common(cfg)
    check_paths(cfg)
    mode = str(cfg.mode)
    if mode == "compare":
        from sagelab.compare import compare_runs

        return compare_runs(cfg)
    if cfg.hpo.name != "none":
        from sagelab.hpo.study import run_study

        return run_study(cfg)

    from hydra.utils import get_class

    task_cls = get_class(str(cfg.task._target_))
    task = task_cls(cfg)
    if mode not in task.modes():
        raise ConfigError("mode", f"is '{mode}'; task {task.name} supports {', '.join(task.modes())}"
                          f"{' (and compare)' if mode not in CORE_MODES else ''}.")
    task.check()
    if cfg.data.get("holdout") is not None and not task.supports_holdout:
        raise ConfigError("data.holdout", f"task {task.name} has no holdout split (it is a GLUE option); "
                          "leave it null.")
    if cfg.checkpoint.get("dir") is None:
        with open_dict(cfg):
            cfg.checkpoint.dir = str(default_checkpoint_dir(cfg))

    from sagelab.runner import Runner

    return Runner(cfg, task).run()


def main(cfg: DictConfig) -> dict | None:
    try:
        return dispatch(cfg)
    except ConfigError as err:
        print(f"sagelab: bad config: {err.key}: {err.message}", file=sys.stderr)
        sys.exit(2)
