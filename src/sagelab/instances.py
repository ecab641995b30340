"""Instance profiles: what hardware a run asks for, how Lightning uses it, and what it costs.

A profile (``conf/instance/*.yaml``) names an accelerator, device and thread
counts (``threads: auto`` for this machine's cores, see :mod:`sagelab.hardware`)
and an on-demand price per hour. Local CPU profiles run here; priced
cloud profiles (``ml_p3_2xlarge`` ...) run where their GPUs exist and
otherwise stop with a clear error. ``cost_usd`` is wall time x price.
"""

from __future__ import annotations

from omegaconf import DictConfig

from sagelab.config import ConfigError


def check_hardware(cfg: DictConfig) -> None:
    """Fail early, with the profile's name, when this machine lacks what the profile asks for."""
    import torch

    inst = cfg.instance
    if inst.accelerator == "gpu":
        have = torch.cuda.device_count()
        need = int(inst.devices)
        if have < need:
            raise ConfigError(
                "instance",
                f"'{inst.name}' needs {need} GPU(s) ({inst.gpu_model}) but this machine has {have}. "
                f"Run it where such GPUs exist, or pick a local profile: instance=local_cpu1 or instance=local_cpu2.",
            )
    elif inst.accelerator != "cpu":
        raise ConfigError("instance.accelerator", f"is '{inst.accelerator}'; use cpu or gpu.")


def processes(cfg: DictConfig) -> int:
    """Processes on this node: the strategy's count on CPU, one per GPU on GPU profiles."""
    if cfg.instance.accelerator == "gpu":
        return int(cfg.instance.devices)
    return int(cfg.strategy.processes)


def cost_usd(cfg: DictConfig, wall_seconds: float) -> float:
    nodes = int(cfg.instance.get("nodes", 1)) * int(cfg.strategy.get("num_nodes", 1))
    return wall_seconds / 3600.0 * float(cfg.instance.price_per_hour) * nodes
