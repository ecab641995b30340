"""compose -> validate -> dispatch. Nothing task-specific lives here.

Before Hydra composes, the command line is checked against the config groups and the typed schema; after,
the composed config's value checks and the task's own contract run. All of it happens before torch or any
task module is imported, so a typo costs a fraction of a second and ends in one line naming the key, never
in a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn

from hydra.experimental.callback import Callback
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
    from sagelab.overrides import check_overrides, check_task_overrides

    conf_dirs = [conf_dir, *searchpath_dirs(argv)]
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        group, _, options = arg.lstrip("+~").partition("=")
        if "." in group:
            continue
        if group.startswith("hydra/"):  # Hydra's own groups: its options plus those of installed plugins
            known = hydra_group_options(group, conf_dirs)
        else:
            folders = [d / group for d in conf_dirs if (d / group).is_dir()]
            known = sorted({option for folder in folders for option in group_options(folder)})
        if not known:
            continue  # not a group we can list: Hydra decides
        for option in options.split(","):  # a --multirun sweep lists several
            if option and option not in known:
                fail(ConfigError(group, f"there is no option '{option}'; choose one of {', '.join(known)}."))
    try:
        check_overrides(argv)
        check_task_overrides(argv, conf_dir)
    except ConfigError as err:
        fail(err)


def hydra_group_options(group: str, conf_dirs: list[Path]) -> list[str]:
    """The options of a ``hydra/...`` group as Hydra itself will look them up: its own (``hydra/launcher=basic``),
    those installed plugins register (``submitit_local``, ``submitit_slurm``, ``joblib``; discovering a plugin imports
    its config module, not its heavy library), and files in conf/ or a ``hydra.searchpath`` folder.

    Hydra's search path and loader are internal API, so if they move this returns nothing and Hydra checks the
    option itself."""
    try:
        from hydra._internal.config_loader_impl import ConfigLoaderImpl
        from hydra._internal.utils import create_config_search_path

        search_path = create_config_search_path(f"file://{conf_dirs[0]}")
        for extra in conf_dirs[1:]:
            search_path.append("sagelab", f"file://{extra}")
        return sorted(ConfigLoaderImpl(config_search_path=search_path).get_group_options(group))
    except Exception:  # noqa: BLE001 -- a Hydra without these internals: leave the check to Hydra
        return []


def searchpath_dirs(argv: list[str]) -> list[Path]:
    """Local folders a ``hydra.searchpath=[file://...]`` override adds: their groups' options count too."""
    dirs = []
    for arg in argv:
        if arg.startswith("hydra.searchpath="):
            for entry in arg.partition("=")[2].strip("[]").split(","):
                entry = entry.strip().strip("'\"")
                if entry.startswith("file://"):
                    dirs.append(Path(entry[len("file://"):]))
    return dirs


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
    from sagelab import faults

    try:
        return dispatch(cfg)
    except ConfigError as err:
        fail(err)
    except faults.Terminated:
        sys.exit(faults.EXIT_SIGTERM)  # the runner has said where the run stands
    except Exception as err:
        problem = faults.storage_problem(err) or faults.peer_gone(err)
        if problem is None:
            raise
        print(f"sagelab: {problem}", file=sys.stderr)
        sys.exit(1)
    return None


def exit_process(code: int | str | None) -> NoReturn:
    """End the command with ``code`` (``sys.exit``'s meaning) without the interpreter's teardown.

    Freeing every module at exit takes about a second once torch, MLflow and DGL are loaded -- a quarter of a
    short command such as a graph transform -- and buys nothing: by now the run is recorded and its files are
    written. What a normal exit does that matters still happens: other threads are joined, every ``atexit``
    hook runs (logging's flush, MLflow's and Lightning's own), and the standard streams are flushed. A command
    that never loaded torch (``--help``, a config error) has little to free and exits normally.
    """
    if "torch" not in sys.modules:
        raise SystemExit(code)
    import atexit
    import os
    import threading

    # what the interpreter does first at exit: the threading exit hooks (concurrent.futures shuts its pools
    # down there, e.g. MLflow's artifact upload workers), then it joins every non-daemon thread
    threading._shutdown()  # type: ignore[attr-defined]
    if isinstance(code, str):  # sys.exit("message"): printed, status 1
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


class OutputFolderCheck(Callback):
    """Hydra creates the run's output folder before ``main`` runs; one it cannot create is one line here,
    not Hydra's traceback. (``${now:}`` is cached per config, so this is the very folder Hydra makes next.)"""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._make(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._make(config, "hydra.sweep.dir")

    @staticmethod
    def _make(config: DictConfig, key: str) -> None:
        from omegaconf import OmegaConf

        from sagelab import faults

        try:
            folder = Path(str(OmegaConf.select(config, key)))
        except Exception:  # ${hydra:...} in the folder's name resolves only once the job runs: Hydra's to check
            return
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            print(f"sagelab: {faults.CannotWrite(folder, err)}", file=sys.stderr)
            sys.exit(1)
