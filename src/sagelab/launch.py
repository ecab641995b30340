"""Running under Lightning's multi-process launcher, once per command or once per ``--multirun`` job.

Lightning's DDP launcher re-executes ``sys.argv`` in its children and leaves its environment variables and
process group behind; both would break the next job of a Hydra sweep. These two functions undo that.

A Hydra launcher may also run each job inside a program of its own (submitit's ``python -m
submitit.core._submit``, joblib's loky workers); Lightning would re-execute that program, so under ``--multirun``
the children are pointed at ``run.py`` itself. (Processes started by torchrun or SLURM are not relaunched at all:
Lightning detects them, :mod:`sagelab.cluster`.)
"""

from __future__ import annotations

import os
import sys

from omegaconf import DictConfig, OmegaConf

from sagelab import instances
from sagelab.config import PROJECT_ROOT

ENTRY = PROJECT_ROOT / "run.py"  # sagelab's one entry point: what a DDP child runs
LAUNCHER_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")  # set by the launcher


def launcher_env() -> dict[str, str | None]:
    return {k: os.environ.get(k) for k in LAUNCHER_ENV}


def keep_children_out_of_the_sweep(cfg: DictConfig) -> None:
    """Under ``--multirun``, Lightning would start DDP children with the whole sweep command line.

    Give it this job's overrides instead, so each child runs exactly its parent's point, through ``run.py`` even
    when a launcher's job program is this process's ``__main__``.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if instances.processes(cfg) < 2 or not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        sys.argv = [str(ENTRY), *hydra_cfg.overrides.task]
        _relaunch_as_a_script()
        OmegaConf.set_readonly(hydra_cfg, False)
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir


def _relaunch_as_a_script() -> None:
    """Lightning starts a child as ``python -m <module>`` when ``__main__`` was run as a module (submitit's job
    runner is), else as ``python <sys.argv[0]>``; the job's process is the launcher's own and ends with the job (or,
    for a pool worker, runs more jobs the same way), so dropping that module spec has no other effect."""
    import __main__

    if getattr(__main__, "__spec__", None) is not None:
        __main__.__spec__ = None


def leave_process_group(launcher_env: dict[str, str | None]) -> None:
    """Close this run's process group and undo the launcher's environment, so the next job of a
    ``--multirun`` launches and rendezvous on its own instead of joining this one's dead group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    for key, value in launcher_env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
