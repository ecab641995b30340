"""GNN link prediction with DGL: train, evaluate, recommend new friends, embed an updated graph.

The seed is "graph-based recommendation with Neptune ML": export a property graph (nodes.csv /
edges.csv), encode node properties, train GraphSAGE/GCN for link prediction with negative sampling,
then ask for the top-k new friends of a user and, when the graph changes, embed new users with the
trained encoder without retraining ("model transform").

* ``mode=train`` / ``evaluate`` go through the shared runner (MLflow, checkpoints, resume).
  Full-graph training is one batch per epoch; ``task.sampling=neighbor`` uses DGL's neighbour
  sampler with uniform negatives. Validation logs ``val/auc``, ``val/mrr``, ``val/hits_at_K``; the
  final evaluation also logs ``test/*`` on the test edges, and :meth:`on_evaluated` logs the node
  embeddings, the id mapping and the fitted feature encoding as artifacts.
* ``mode=recommend task.node=Henry task.k=8``: the k most likely new links of that node.
* ``mode=transform task.transform.nodes=... task.transform.edges=...``: encode an updated export
  with the trained feature encoding and weights, log fresh embeddings and what changed, recommend for new and
  changed nodes (:mod:`.incremental`); ``mode=recommend`` with the same keys answers for a node of the update.
* ``mode=retrain checkpoint.load=<run id>``: train on ``task.dataset`` (the updated export) warm-started from
  that run's weights, hyperparameters, encoding and split (:mod:`.retrain`).

The fitted feature encoding and the training node ids travel inside the checkpoint (the module's
``extra_state``), so recommend/transform encode data exactly as training did. This module is cheap:
no torch or DGL until a hook runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from omegaconf import MISSING, DictConfig

from sagelab.config import ConfigError
from sagelab.checks import each, fraction, one_of, positive
from sagelab.schema import checked
from sagelab.tasks.base import Mode
from sagelab.tasks.graph import SAMPLING
from sagelab.tasks.graph.config import GnnModelConfig, GraphDataConfig, GraphTask

__all__ = ["GnnModelConfig", "LinkPredictionConfig", "LinkPredictionTask", "SplitConfig", "TransformConfig"]

if TYPE_CHECKING:
    from sagelab.context import TaskContext
    from sagelab.diagnose import DiagnoseInputs
    from sagelab.tasks.graph.data import LinkDataModule
    from sagelab.tasks.graph.module import LinkPredictionModule
    from sagelab.tasks.graph.pipeline import PreparedGraph
    from sagelab.tasks.graph.trained import TrainedGraph

#: the task's own modes that only embed and rank: they load the network without its LightningModule
INFERENCE_ONLY = ("transform", "recommend")


# -- the schema of the task: and model: blocks ------------------------------------------------------------------
@dataclass(kw_only=True)
class SplitConfig:
    val: float = checked(MISSING, fraction)  # fractions of undirected edges held out
    test: float = checked(MISSING, fraction)
    seed: int = MISSING


@dataclass(kw_only=True)
class TransformConfig:
    nodes: Optional[str] = None
    edges: Optional[str] = None
    top_moved: int = checked(20, positive)  # nodes listed in changes.json's moved_most
    printed: int = checked(10, positive)  # recommendation lists printed (all are logged)


@dataclass(kw_only=True)
class LinkPredictionConfig(GraphDataConfig):
    split: SplitConfig = field(default_factory=SplitConfig)
    sampling: str = checked(MISSING, one_of(*SAMPLING))
    fanouts: list[int] = MISSING  # per layer; -1 takes every neighbour
    neg_ratio: int = checked(MISSING, positive)
    eval_negs: int = checked(MISSING, positive)
    hits_at: list[int] = checked(MISSING, each(positive))
    node: Optional[str] = None
    k: int = checked(MISSING, positive)
    transform: TransformConfig = field(default_factory=TransformConfig)


class LinkPredictionTask(GraphTask):
    config_class = LinkPredictionConfig
    lightning_modes = ("train", "evaluate", "retrain")
    training_modes = ("train", "retrain")  # retrain: module() comes warm-started (see validate)
    supports_multiprocess = False  # full-graph or sampled, one process

    def __init__(self, cfg: DictConfig) -> None:
        super().__init__(cfg)
        self._prepared: PreparedGraph | None = None
        self._warm: dict[str, Any] = {}  # mode=retrain: the previous run's id, config, state and the changes
        self._saved_encoding: dict[str, Any] | None = None  # a loaded checkpoint's fitted encoding

    def validate(self) -> None:
        if str(self.cfg.mode) == "retrain":  # inherit before checking, so the merged config is what is checked
            from sagelab.tasks.graph.retrain import apply_previous_run

            if self.cfg.task.transform.get("nodes"):
                raise ConfigError("task.transform.nodes", "mode=retrain trains on task.dataset: name the updated "
                                  "export there (task.dataset=csv task.datasets.csv.nodes=... task.datasets.csv.edges=...).")

            self._warm["run_id"], self._warm["config"] = apply_previous_run(self.cfg)
        super().validate()

    def check(self) -> None:
        task, layers = self.cfg.task, int(self.cfg.model.num_layers)
        if task.sampling == "neighbor" and not 1 <= len(task.fanouts) <= layers:
            raise ConfigError("task.fanouts", f"has {len(task.fanouts)} entries for model.num_layers={layers} "
                              "(one per layer; a shorter list repeats its last entry).")
        self.check_graph()
        mode = str(self.cfg.mode)
        if mode == "recommend" and task.node is None:
            raise ConfigError("task.node", "mode=recommend needs a node id or name, e.g. task.node=Henry.")
        if mode == "transform" or (mode == "recommend" and task.transform.get("nodes")):
            for part in ("nodes", "edges"):
                value = task.transform.get(part)
                if not value or not Path(str(value)).exists():
                    raise ConfigError(f"task.transform.{part}", f"mode={mode} needs an updated export file; got {value!r}.")

    # -- data and model: the config mapped to constructor arguments, here only --------------------
    def prepared(self) -> PreparedGraph:
        """Read, encode and split the configured graph once per process."""
        if self._prepared is None and str(self.cfg.mode) == "retrain":
            from sagelab.tasks.graph.retrain import load_previous_state, prepare_warm

            if "config" not in self._warm:
                raise RuntimeError("mode=retrain: validate() inherits the previous run before data is prepared")
            self._warm["state"] = load_previous_state(self.cfg)
            self._prepared, self._warm["changes"] = prepare_warm(self.cfg, self.dataset, self._warm["config"],
                                                                 self._warm["state"])
        if self._prepared is None:
            from sagelab.tasks.graph.features import FeatureEncoder
            from sagelab.tasks.graph.pipeline import load_graph, prepare

            spec, task = self.dataset, self.cfg.task
            graph = load_graph(spec, separator=str(task.separator))
            saved = FeatureEncoder.from_state(self._saved_encoding) if self._saved_encoding else None
            split = None
            if str(self.cfg.mode) in ("evaluate", "diagnose"):  # a retrained run is scored on the split it kept
                from sagelab.tasks.graph.retrain import trained_split

                split = trained_split(self.cfg, graph)
            evaluates = str(self.cfg.mode) not in INFERENCE_ONLY  # transform / recommend score no held-out edges
            self._prepared = prepare(
                graph, spec["features"], spec.get("name_property"), float(task.split.val), float(task.split.test),
                int(task.eval_negs) if evaluates else 0, int(task.split.seed), encoder=saved, split=split,
            )
        return self._prepared

    def datamodule(self) -> LinkDataModule:
        from sagelab.tasks.graph.data import LinkDataModule

        cfg, layers = self.cfg, int(self.cfg.model.num_layers)
        fanouts = [int(f) for f in cfg.task.fanouts][:layers]
        fanouts += fanouts[-1:] * (layers - len(fanouts))  # a shorter list repeats its last entry
        return LinkDataModule(
            self.prepared(), sampling=str(cfg.task.sampling), fanouts=fanouts, self_loops=cfg.model.arch == "gcn",
            neg_ratio=int(cfg.task.neg_ratio), batch_size=int(cfg.optim.batch_size), seed=int(cfg.seed),
            num_workers=int(cfg.data.num_workers),
        )

    def _shape(self) -> dict[str, Any]:
        """The network's shape arguments (``build_predictor``'s) from the config and the prepared graph."""
        data, model, task = self.prepared(), self.cfg.model, self.cfg.task
        return dict(in_dim=int(data.x.shape[1]), num_nodes=data.num_nodes, arch=str(model.arch),
                    hidden_dim=int(model.hidden_dim), num_layers=int(model.num_layers), dropout=float(model.dropout),
                    aggregator=str(model.aggregator), scorer=str(model.scorer),
                    id_embedding=int(task.id_embedding or 0), bias=bool(model.get("bias", True)))

    def module(self) -> LinkPredictionModule:
        from sagelab.tasks.graph.module import LinkPredictionModule

        data, task, optim = self.prepared(), self.cfg.task, self.cfg.optim
        module = LinkPredictionModule(**self._shape(), neg_ratio=int(task.neg_ratio),
                                      hits_at=[int(k) for k in task.hits_at], lr=float(optim.lr),
                                      weight_decay=float(optim.weight_decay))
        module.set_graph_state(data.encoder.state_dict(), data.graph.node_ids, data.names)
        if "state" in self._warm:  # mode=retrain
            from sagelab.tasks.graph.retrain import warm_start

            warm_start(module, self._warm["state"], data.graph.node_ids)
        return module

    def module_from_state(self, state: dict[str, Any]) -> LinkPredictionModule | TrainedGraph:
        """The configured graph encoded with the checkpoint's own encoding (a retrained model keeps the one it
        started from, which refitting on its graph need not reproduce), then the module built and loaded: for
        transform and recommend the network alone (:class:`TrainedGraph`: no Lightning to import)."""
        from sagelab.tasks.graph.trained import plain

        saved = (state.get("_extra_state") or {}).get("features")
        if saved is not None and saved != self._saved_encoding:
            if self._prepared is not None and plain(self._prepared.encoder.state_dict()) != saved:
                self._prepared = None  # encoded another way: prepare again with the saved encoding
            self._saved_encoding = saved
        if str(self.cfg.mode) in INFERENCE_ONLY:
            from sagelab.tasks.graph.trained import TrainedGraph

            trained = TrainedGraph(**self._shape())
            trained.load_state_dict(state)
            return trained
        return super().module_from_state(state)

    # -- after evaluation: the seed's "model artifacts, raw embeddings, mapping" -------------
    def on_evaluated(self, context: TaskContext, module: Any, metrics: dict[str, float]) -> None:
        from sagelab.tasks.graph.recommend import full_embeddings

        data = self.prepared()
        h = full_embeddings(module.model, data.x, data.all_edges(), module.model.needs_self_loops)
        log_embeddings(context, "link_prediction", h, data.graph.node_ids, data.names,
                       {"features.json": data.encoder.state_dict()})
        context.tracker.log_dict(data.describe(), "graph.json")
        if "changes" in self._warm:  # mode=retrain: what changed since the run it started from
            changes = self._warm["changes"]
            context.tracker.set_tag("sagelab.warm_start", self._warm["run_id"])
            context.tracker.log_dict(changes.report(int(self.cfg.task.transform.top_moved)), "retrain/changes.json")
            context.tracker.log_metrics(changes.metrics("retrain"))

    # -- task modes ------------------------------------------------------------------------
    def extra_modes(self) -> dict[str, Mode]:
        return {"recommend": self.recommend, "transform": self.transform, **super().extra_modes()}

    def diagnose_inputs(self, context: TaskContext) -> DiagnoseInputs:
        """Held-out edges against their fixed negatives, scored as link probabilities."""
        from sagelab.tasks.graph.diagnose import diagnose_inputs

        return diagnose_inputs(self, context)

    def recommend(self, context: TaskContext) -> dict[str, Any]:
        import torch

        from sagelab.tasks.graph import incremental
        from sagelab.tasks.graph.recommend import find_node, full_embeddings, recommend

        if incremental.has_update(self):  # a node of the updated export, new ones included
            found = incremental.recommend_in_update(self, context)
            return self._report_recommendations(context, found["answer"]) | {"recommend/new_node": found["new_node"]}
        module = context.load_module()
        data, task = self.prepared(), self.cfg.task
        if module.node_ids != data.graph.node_ids:
            raise ConfigError("task.dataset", f"the graph ({data.graph.source}) is not the one the checkpoint was trained "
                              "on; embed a changed graph with mode=transform.")
        node = find_node(str(task.node), data.graph.node_ids, data.names)
        edges = data.all_edges()
        x = torch.from_numpy(module.feature_encoder().transform(data.graph))  # the encoding saved at training
        h = full_embeddings(module.model, x, edges, module.model.needs_self_loops)
        top = recommend(module.model, h, node, int(task.k), edges, data.graph.node_ids, data.names)
        result = {"node": {"id": data.graph.node_ids[node], "name": data.names[node]}, "recommendations": top}
        return self._report_recommendations(context, result)

    @staticmethod
    def _report_recommendations(context: TaskContext, result: dict[str, Any]) -> dict[str, Any]:
        print_recommendations(result)
        context.tracker.log_dict(result, "recommendations.json")
        top = result["recommendations"]
        return {"recommend/count": len(top), "recommend/top_score": top[0]["score"] if top else 0.0}

    def transform(self, context: TaskContext) -> dict[str, Any]:
        from sagelab.tasks.graph.incremental import transform_mode

        return transform_mode(self, context)


def log_embeddings(context: TaskContext, folder: str, embeddings: Any, node_ids: Sequence[str],
                   names: Sequence[str], extra: dict[str, Any] | None = None) -> None:
    """Write ``embeddings.npy`` + ``mapping.json`` (+ ``extra`` JSON files) under ``output_dir/folder`` and log
    them as the run's ``embeddings/`` artifacts."""
    import numpy as np

    out = context.output_dir / folder
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "embeddings.npy", embeddings.numpy())
    files = {"mapping.json": {"node_ids": list(node_ids), "names": list(names)}, **(extra or {})}
    for name, content in files.items():
        (out / name).write_text(json.dumps(content))
    for name in ("embeddings.npy", *files):
        context.tracker.log_artifact(out / name, "embeddings")


def print_recommendations(result: dict[str, Any]) -> None:
    node = result["node"]
    label = node["name"] if node["name"] == node["id"] else f"{node['name']} ({node['id']})"
    print(f"top {len(result['recommendations'])} new links for {label}:")
    for rank, rec in enumerate(result["recommendations"], start=1):
        print(f"  {rank:>2}. {rec['name']:<20} {rec['score']:.3f}")
