"""Processes started by someone else: torchrun, SLURM (also through ``hydra/launcher=submitit_slurm``), LSF, MPI.

Lightning detects these launchers from their environment variables (its ``ClusterEnvironment`` classes, tried
here in Lightning's own order) and then starts no processes of its own; it only refuses a ``devices`` x
``num_nodes`` that disagrees with the world size, in a multi-line ``ValueError`` raised from inside the Trainer
and after the MLflow run is open. This module asks the same question first, before anything is recorded, and
answers a disagreement in one line naming the config key to change. It also refuses ``strategy.num_nodes > 1``
with nobody to start the other nodes, which would otherwise wait forever for peers that never come.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from omegaconf import DictConfig

from sagelab import instances
from sagelab.config import ConfigError

#: what each of Lightning's external environments calls itself, and where it keeps the processes per node and the
#: node count (None: this launcher does not say)
KNOWN = {
    "TorchElasticEnvironment": ("torchrun", "LOCAL_WORLD_SIZE", "GROUP_WORLD_SIZE"),
    "SLURMEnvironment": ("SLURM", "SLURM_NTASKS_PER_NODE", "SLURM_NNODES"),
    "LSFEnvironment": ("LSF", None, None),
    "MPIEnvironment": ("MPI", None, None),
}
#: set by hand for Lightning's own multi-node launcher (the same command on each node with NODE_RANK and MASTER_ADDR)
MANUAL_NODE_VARS = ("NODE_RANK", "MASTER_ADDR")
#: where a launcher puts this process's rank, in the order Lightning reads them (LOCAL_RANK before SLURM_PROCID:
#: SLURM sets the latter even when it does not manage the processes)
RANK_VARS = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


@dataclass(frozen=True)
class External:
    """The launcher that started this process and the world it started."""

    name: str
    world_size: int
    per_node: int | None
    nodes: int | None


def external() -> External | None:
    """The external launcher Lightning will detect, or None when Lightning starts the processes itself."""
    from lightning.fabric.plugins import environments

    for class_name, (name, per_node_var, nodes_var) in KNOWN.items():
        environment = getattr(environments, class_name)
        if environment.detect():
            return External(name, int(environment().world_size()), _count(per_node_var), _count(nodes_var))
    return None


def global_rank() -> int:
    """This process's rank, as Lightning's ``rank_zero_only.rank`` holds it (its strategies update it). Set here
    first, from the launcher's variables in Lightning's order, when Lightning is not imported yet; Lightning's
    import keeps a rank already set, and a task's own modes need not import Lightning to ask."""
    from lightning_utilities.core.rank_zero import rank_zero_only

    if not hasattr(rank_zero_only, "rank"):
        found = next((os.environ[k] for k in RANK_VARS if os.environ.get(k) is not None), None)
        rank_zero_only.rank = int(found or 0)
    return int(rank_zero_only.rank)


def _count(variable: str | None) -> int | None:
    """A count from the environment; SLURM writes uneven layouts as ``2(x3),1``: the first number is this shape's."""
    match = re.match(r"\d+", os.environ.get(variable, "")) if variable else None
    return int(match.group()) if match else None


def check(cfg: DictConfig) -> External | None:
    """The launcher that started this process, if any, after checking that the config describes its world."""
    launcher = external()
    processes, nodes = instances.processes(cfg), int(cfg.strategy.num_nodes)
    if launcher is None:
        if nodes > 1 and not any(os.environ.get(v) for v in MANUAL_NODE_VARS):
            raise ConfigError("strategy.num_nodes", f"is {nodes}, but no launcher started this process on {nodes} "
                              "nodes: start it on every node with torchrun (or on SLURM with "
                              "hydra/launcher=submitit_slurm); README, 'Many machines'.")
        return None
    per_node_key = "instance.devices" if cfg.instance.accelerator == "gpu" else "strategy.processes"
    if launcher.per_node is not None and launcher.per_node != processes:
        raise ConfigError(per_node_key, f"is {processes}, but {launcher.name} started {launcher.per_node} "
                          f"process(es) on this node; set {per_node_key}={launcher.per_node}.")
    if processes * nodes != launcher.world_size:
        want = launcher.nodes or max(1, launcher.world_size // processes)
        raise ConfigError("strategy.num_nodes", f"is {nodes}, but {launcher.name} started {launcher.world_size} "
                          f"process(es) in all, {processes} per node: set strategy.num_nodes={want}.")
    return launcher
