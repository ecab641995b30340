"""``mode=retrain``: train on an updated graph warm-started from a previous run, as Neptune ML's incremental
model training does (``--previous-model-training-job-id``).

What the previous run hands on (``checkpoint.load=<its MLflow run id>``, or its ``final.ckpt`` in a checkpoint
folder whose ``sagelab_state.json`` names the run):

* **its hyperparameters** -- the ``model.*``, ``optim.*``, ``task.split.*`` and ``task.id_embedding`` values of its
  logged ``config.yaml`` replace the composed ones, except keys the command line sets (they win; ``model=<name>``
  counts only when it names another model than the previous run's);
* **its fitted feature encoding** -- the updated graph is encoded as the previous one was, so every weight sees
  the input layout it was trained on (category values new since then fall into OTHER);
* **its weights** -- copied into a module sized for the updated graph; a learnable id embedding
  (``task.id_embedding > 0``) keeps each surviving node's row, drops removed nodes' rows and gives new nodes the
  mean trained row (what ``mode=transform`` gives them); any other shape that differs is refused in one line;
* **its split** -- an edge held out before (validation or test) stays held out, training edges stay training
  edges, and only new edges are split with ``task.split``'s fractions and seed: the warm-started weights have
  never seen a validation edge, so ``val/*`` is comparable with the previous run's. A chain of retrainings
  carries the split of the first run through every step (each step's split is rebuilt from its logged config).

Cheap at import: numpy and the graph readers only; torch and MLflow inside the functions.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

from sagelab.config import ConfigError
from sagelab.tasks.graph.property_graph import PropertyGraph
from sagelab.tasks.graph.split import EdgeSplit

#: the previous run's keys a warm start inherits (what its weights and split were made with)
INHERITED = ("model", "optim", "task.split", "task.id_embedding")
KEY = "checkpoint.load"


def previous_run_id(ref: str, tracking_uri: str) -> str:
    """The MLflow run behind ``checkpoint.load``: a run id, a ``runs:/<id>/...`` URI, or a .ckpt whose folder's
    ``sagelab_state.json`` names the run that wrote it."""
    from sagelab.tracking import MODEL_URI, looks_like_run_id

    if looks_like_run_id(ref):
        return ref
    match = MODEL_URI.match(ref)
    if match and match["run"]:
        return match["run"]
    if Path(ref).is_file():
        from sagelab.run_state import read_state

        state = read_state(Path(ref).parent) or {}
        if state.get("run_id"):
            return str(state["run_id"])
    raise ConfigError(KEY, f"'{ref}' names no MLflow run; mode=retrain takes the previous run's hyperparameters "
                      "from its record: give its run id.")


def previous_config(run_id: str, tracking_uri: str) -> DictConfig:
    """The run's logged ``config.yaml`` (the resolved config it ran with)."""
    import mlflow

    try:
        mlflow.MlflowClient(tracking_uri).get_run(run_id)
    except Exception:  # MLflow raises its own exception types per store
        raise ConfigError(KEY, f"no MLflow run '{run_id}' in {tracking_uri}.") from None
    try:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="config.yaml",
                                                   tracking_uri=tracking_uri)
    except Exception as err:  # MLflow raises its own exception types per store
        raise ConfigError(KEY, f"MLflow run '{run_id}' has no config.yaml in {tracking_uri} "
                          f"({type(err).__name__}).") from err
    return OmegaConf.load(path)


def command_line_keys() -> list[str]:
    """The dotted keys (and group names) the command line set, from Hydra's record of this job."""
    from hydra.core.hydra_config import HydraConfig

    from sagelab.hpo.inherit import override_key

    if not HydraConfig.initialized():
        return []
    return [override_key(str(o)) for o in HydraConfig.get().overrides.task]


def _leaves(node: Any, prefix: str) -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out |= _leaves(value, f"{prefix}.{key}")
        return out
    return {prefix: node}


def inherit(cfg: DictConfig, previous: DictConfig, command: Sequence[str]) -> dict[str, tuple[Any, Any]]:
    """Copy the previous run's :data:`INHERITED` values into ``cfg`` unless ``command`` sets them; returns the
    keys whose value changed, ``key -> (composed, inherited)``."""
    # a group chosen on the command line (model=graphsage) overrides only when it is not the previous run's choice
    same = {g for g in ("model", "task")
            if OmegaConf.select(cfg, f"{g}.name") == OmegaConf.select(previous, f"{g}.name")}
    overridden = [k for k in command if k not in same]
    changed: dict[str, tuple[Any, Any]] = {}
    for prefix in INHERITED:
        node = OmegaConf.select(previous, prefix)
        if node is None:
            continue
        plain = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
        for key, value in _leaves(plain, prefix).items():
            if any(key == k or key.startswith(k + ".") for k in overridden):
                continue
            current = OmegaConf.select(cfg, key, default=None)
            if current != value:
                with open_dict(cfg):
                    OmegaConf.update(cfg, key, value, force_add=True)
                changed[key] = (current, value)
    return changed


def apply_previous_run(cfg: DictConfig) -> tuple[str, DictConfig]:
    """``mode=retrain``'s config step (before validation and the run): inherit, say what changed, and give the
    run a checkpoint folder of its own (its setup is "this config, started from that run")."""
    from sagelab.config import default_checkpoint_dir

    ref = cfg.checkpoint.get("load")
    if ref is None:
        raise ConfigError(KEY, "mode=retrain warm-starts from a previous run: give its MLflow run id.")
    uri = str(cfg.logger.tracking_uri)
    run_id = previous_run_id(str(ref), uri)
    previous = previous_config(run_id, uri)
    if OmegaConf.select(previous, "task.name") != cfg.task.name:
        raise ConfigError(KEY, f"run '{run_id}' is a {OmegaConf.select(previous, 'task.name')} run, not {cfg.task.name}.")
    changed = inherit(cfg, previous, command_line_keys())
    if changed:
        listed = ", ".join(f"{k}={v[1]}" for k, v in changed.items())
        print(f"sagelab: retrain takes from run {run_id}: {listed}", file=sys.stderr)
    if cfg.checkpoint.get("dir") is None:
        with open_dict(cfg):
            cfg.checkpoint.dir = f"{default_checkpoint_dir(cfg)}-from-{run_id[:8]}"
    return run_id, previous


def previous_graph(previous: DictConfig, separator: str, tracking_uri: str,
                   depth: int = 0) -> tuple[PropertyGraph, EdgeSplit]:
    """The graph the previous run trained on (its logged dataset entry) and its edge split: re-drawn with its seed,
    or, when that run was itself a retraining, carried over from the run it started from (and so on back)."""
    from sagelab.tasks.graph.pipeline import load_graph
    from sagelab.tasks.graph.split import split_edges

    task = previous.task
    spec = OmegaConf.to_container(task.datasets[task.dataset], resolve=True)
    graph = load_graph(spec, separator=separator)
    val, test, seed = float(task.split.val), float(task.split.test), int(task.split.seed)
    if OmegaConf.select(previous, "mode") != "retrain":
        return graph, split_edges(graph.src, graph.dst, graph.num_nodes, val, test, seed)
    if depth >= 100:
        raise ConfigError(KEY, "more than 100 retrainings in a row; the chain of previous runs looks circular.")
    earlier = previous_run_id(str(previous.checkpoint.load), tracking_uri)
    base, base_split = previous_graph(previous_config(earlier, tracking_uri), separator, tracking_uri, depth + 1)
    return graph, carried_split(base, base_split, graph, val, test, seed)


def carried_split(base: PropertyGraph, base_split: EdgeSplit, updated: PropertyGraph, val: float, test: float,
                  seed: int) -> EdgeSplit:
    """``updated``'s edges split so that each edge ``base`` had keeps its part; new edges are shuffled with ``seed``
    and cut into ``val`` / ``test`` fractions (rounded, so a handful of new edges may all train)."""
    from sagelab.tasks.graph.changes import id_pair

    part_of: dict[tuple[str, str], str] = {}
    for part in ("train", "val", "test"):
        for s, d in getattr(base_split, part).tolist():
            part_of[id_pair(base.node_ids[s], base.node_ids[d])] = part
    edges = np.stack([updated.src, updated.dst], axis=1).astype(np.int64)
    ids = updated.node_ids
    parts = np.array([part_of.get(id_pair(ids[s], ids[d]), "new") for s, d in edges.tolist()], dtype=object)
    new = np.flatnonzero(parts == "new")
    new = new[np.random.default_rng(seed).permutation(len(new))]
    n_val, n_test = int(round(val * len(new))), int(round(test * len(new)))
    parts[new[:n_val]], parts[new[n_val:n_val + n_test]], parts[new[n_val + n_test:]] = "val", "test", "train"
    return EdgeSplit(num_nodes=updated.num_nodes, **{p: edges[parts == p] for p in ("train", "val", "test")})


def load_previous_state(cfg: DictConfig) -> dict[str, Any]:
    """The ``state_dict`` of ``checkpoint.load``'s checkpoint (tensors and plain data only)."""
    from sagelab.safe_io import load_checkpoint
    from sagelab.tracking import resolve_model

    path = resolve_model(KEY, str(cfg.checkpoint.load), str(cfg.logger.tracking_uri))
    state = load_checkpoint(path, KEY).get("state_dict") if path.is_file() else None
    if not isinstance(state, dict) or "_extra_state" not in state:
        raise ConfigError(KEY, f"'{path}' is not a link-prediction checkpoint (no state_dict with the graph state).")
    return state


def warm_start(module: Any, state: dict[str, Any], node_ids: Sequence[str]) -> None:
    """Load the previous weights into ``module`` (built for ``node_ids``); id-embedding rows follow their node."""
    import torch

    weights = {k: v for k, v in state.items() if k != "_extra_state"}
    table = "model.id_embedding.weight"
    if table in weights:
        old = {n: i for i, n in enumerate(state["_extra_state"]["node_ids"])}
        rows = weights[table]
        grown = rows.mean(0, keepdim=True).repeat(len(node_ids), 1)  # new nodes: the mean row, as transform gives
        kept = [(j, old[n]) for j, n in enumerate(node_ids) if n in old]
        if kept:
            new_idx, old_idx = (torch.tensor(c) for c in zip(*kept))
            grown[new_idx] = rows[old_idx]
        weights[table] = grown
    own = {k: v for k, v in module.state_dict().items() if k != "_extra_state"}
    for name in sorted(set(own) | set(weights)):
        if name not in weights or name not in own or own[name].shape != weights[name].shape:
            there = tuple(weights[name].shape) if name in weights else "absent"
            here = tuple(own[name].shape) if name in own else "absent"
            raise ConfigError(KEY, f"the previous run's weights do not fit this model: {name} is {there} there and "
                              f"{here} here (a model.* or task.id_embedding value set on the command line?).")
    module.load_state_dict({**weights, "_extra_state": module.get_extra_state()})


def prepare_warm(cfg: DictConfig, spec: dict[str, Any], previous: DictConfig, state: dict[str, Any]) -> tuple[Any, Any]:
    """The updated graph (``task.dataset``) prepared with the previous encoding and the carried split, and what
    changed since the previous run's graph (:class:`~sagelab.tasks.graph.changes.GraphChanges`)."""
    from sagelab.tasks.graph.changes import compare
    from sagelab.tasks.graph.features import FeatureEncoder
    from sagelab.tasks.graph.pipeline import load_graph, prepare

    task, separator = cfg.task, str(cfg.task.separator)
    base, base_split = previous_graph(previous, separator, str(cfg.logger.tracking_uri))
    trained = state["_extra_state"]["node_ids"]
    if base.node_ids != trained:
        raise ConfigError(KEY, f"the previous run's graph ({base.source}) now has {base.num_nodes} nodes, its checkpoint "
                          f"{len(trained)}: it changed since that run trained; export updates to a new folder and "
                          "name them in task.dataset.")
    updated = load_graph(spec, separator=separator)
    val, test, seed = float(task.split.val), float(task.split.test), int(task.split.seed)
    split = carried_split(base, base_split, updated, val, test, seed)
    encoder = FeatureEncoder.from_state(state["_extra_state"]["features"])
    prepared = prepare(updated, None, spec.get("name_property"), val, test, int(task.eval_negs), seed,
                       encoder=encoder, split=split)
    return prepared, compare(base, updated)


def trained_split(cfg: DictConfig, graph: PropertyGraph) -> EdgeSplit | None:
    """For ``mode=evaluate`` / ``diagnose`` of a retrained run on its own graph: the split it trained with (carried
    along its chain of runs), since a split re-drawn on that graph would test on edges the warm start trained on.
    None for any other checkpoint or graph: the command's own seeded split, as always."""
    ref, uri = cfg.checkpoint.get("load"), str(cfg.logger.tracking_uri)
    if ref is None:
        return None
    try:
        config = previous_config(previous_run_id(str(ref), uri), uri)
    except ConfigError:  # a checkpoint without a run record: nothing to carry
        return None
    if OmegaConf.select(config, "mode") != "retrain":
        return None
    its_graph, split = previous_graph(config, str(cfg.task.separator), uri)
    from sagelab.tasks.graph.changes import id_edge_keys, shared_numbering

    if its_graph.node_ids != graph.node_ids:
        return None
    numbering = shared_numbering(graph)
    if not np.array_equal(id_edge_keys(its_graph, numbering), id_edge_keys(graph, numbering)):
        return None
    return split
