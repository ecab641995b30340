"""Running under Lightning's multi-process launcher, once per command or once per ``--multirun`` job.

Lightning's DDP launcher re-executes ``sys.argv`` in its children and leaves its environment variables and
process group behind; both would break the next job of a Hydra sweep. These two functions undo that.
"""

from __future__ import annotations

import os
import sys

from omegaconf import DictConfig, OmegaConf

from sagelab import instances

LAUNCHER_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")  # set by the launcher


def launcher_env() -> dict[str, str | None]:
    return {k: os.environ.get(k) for k in LAUNCHER_ENV}


def keep_children_out_of_the_sweep(cfg: DictConfig) -> None:
    """Under ``--multirun``, Lightning would start DDP children with the whole sweep command line.

    Give it this job's overrides instead, so each child runs exactly its parent's point.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if instances.processes(cfg) < 2 or not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        sys.argv = [sys.argv[0], *hydra_cfg.overrides.task]
        OmegaConf.set_readonly(hydra_cfg, False)
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir


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
