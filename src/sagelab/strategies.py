"""Lightning strategies by name: ``conf/strategy/<name>.yaml`` names one of these in ``_target_``.

A new strategy is a YAML file and, if Lightning has no ready object for it, a function here; the runner
calls ``strategy._target_`` with the same keyword arguments whatever the strategy.

Across machines the same factories serve: under torchrun or SLURM, Lightning detects the launcher's environment
and starts no processes itself (:mod:`sagelab.cluster` checks the config against that world first).
"""

from __future__ import annotations

from typing import Any

from sagelab.config import ConfigError


def single(processes: int, num_nodes: int, backend: str) -> Any:
    return "auto"


def ddp(processes: int, num_nodes: int, backend: str, start_method: str = "popen") -> Any:
    from lightning.pytorch.strategies import DDPStrategy

    return DDPStrategy(process_group_backend=backend, start_method=start_method)


def ddp_spawn(processes: int, num_nodes: int, backend: str) -> Any:
    """DDP whose processes ``torch.multiprocessing`` spawns. Lightning would spawn them even inside processes that
    torchrun or SLURM started (a world of worlds), so that is refused here."""
    from sagelab import cluster

    launcher = cluster.external()
    if launcher is not None:
        raise ConfigError("strategy", f"ddp_spawn starts its own processes, but {launcher.name} already started "
                          "them: use strategy=ddp or strategy=ddp_multinode.")
    return ddp(processes, num_nodes, backend, start_method="spawn")


def fsdp(processes: int, num_nodes: int, backend: str) -> Any:
    """Parameters, gradients and optimizer state sharded over every process (``fully_shard`` per layer).

    Lightning's ``FSDPStrategy`` wants CUDA; ``ModelParallelStrategy`` with one tensor-parallel rank is the same
    sharding on CPU. Checkpoints are consolidated so that one process can evaluate them.
    """
    from lightning.pytorch.strategies import ModelParallelStrategy

    return ModelParallelStrategy(
        data_parallel_size=processes * num_nodes, tensor_parallel_size=1, save_distributed_checkpoint=False,
    )
