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
  with the trained feature encoding and weights, log fresh embeddings, recommend for new nodes.

The fitted feature encoding and the training node ids travel inside the checkpoint (the module's
``extra_state``), so recommend/transform encode data exactly as training did.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Callable

from omegaconf import DictConfig, OmegaConf

from sagelab.config import ConfigError, check_positive
from sagelab.tasks.base import Task

if TYPE_CHECKING:
    from sagelab.tasks.graph.pipeline import PreparedGraph
    from sagelab.runner import Runner

SAMPLING = ("full", "neighbor")


class LinkPredictionTask(Task):
    lightning_modes = ("train", "evaluate")

    def __init__(self, cfg: DictConfig) -> None:
        super().__init__(cfg)
        self._prepared: PreparedGraph | None = None

    # -- configuration -----------------------------------------------------------------
    @property
    def dataset(self) -> dict[str, Any]:
        """The selected ``task.datasets`` entry with ``task.features`` merged over its features."""
        name = str(self.cfg.task.dataset)
        datasets = self.cfg.task.datasets
        if name not in datasets:
            raise ConfigError("task.dataset", f"is {name!r}; allowed values are {', '.join(datasets)}.")
        spec = OmegaConf.to_container(datasets[name], resolve=True)
        merged = dict(spec.get("features") or {})
        for prop, override in (OmegaConf.to_container(self.cfg.task.features, resolve=True) or {}).items():
            merged[prop] = {**(merged.get(prop) or {}), **(override or {})}
        spec["features"] = merged
        return spec

    def check(self) -> None:
        from sagelab.tasks.graph.pipeline import check_dataset

        model, task = self.cfg.model, self.cfg.task
        if model.get("kind") != "gnn":
            raise ConfigError("model", f"'{model.get('name')}' is not a graph model (kind: {model.get('kind')}); "
                              "task=link_prediction needs model=graphsage or model=gcn.")
        from sagelab.tasks.graph import AGGREGATORS, ARCHS, SCORERS

        for key, allowed in (("model.arch", ARCHS), ("model.scorer", SCORERS), ("model.aggregator", AGGREGATORS),
                             ("task.sampling", SAMPLING)):
            value = OmegaConf.select(self.cfg, key)
            if value not in allowed:
                raise ConfigError(key, f"is {value!r}; allowed values are {', '.join(allowed)}.")
        check_positive(self.cfg, ["model.hidden_dim", "model.num_layers", "task.neg_ratio", "task.eval_negs", "task.k"])
        check_positive(self.cfg, ["model.dropout", "task.id_embedding"], allow_zero=True)
        if not 0 <= float(model.dropout) < 1:
            raise ConfigError("model.dropout", f"must be in [0, 1), got {model.dropout}.")
        if task.sampling == "neighbor" and not 1 <= len(task.fanouts) <= int(model.num_layers):
            raise ConfigError("task.fanouts", f"has {len(task.fanouts)} entries for model.num_layers={model.num_layers} "
                              "(one per layer; a shorter list repeats its last entry).")
        check_dataset(self.dataset, f"task.datasets.{task.dataset}")
        from sagelab.instances import processes

        if processes(self.cfg) > 1 or int(self.cfg.strategy.get("num_nodes", 1)) > 1:
            raise ConfigError("strategy", f"'{self.cfg.strategy.name}' runs several processes; link prediction "
                              "trains in one (full-graph or sampled), use strategy=single.")
        mode = str(self.cfg.mode)
        if mode == "recommend" and task.node is None:
            raise ConfigError("task.node", "mode=recommend needs a node id or name, e.g. task.node=Henry.")
        if mode == "transform":
            from pathlib import Path

            for part in ("nodes", "edges"):
                value = task.transform.get(part)
                if not value or not Path(str(value)).exists():
                    raise ConfigError(f"task.transform.{part}", f"mode=transform needs an updated export file; got {value!r}.")

    # -- data ----------------------------------------------------------------------------
    def prepared(self) -> PreparedGraph:
        """Read, encode and split the configured graph once per process."""
        if self._prepared is None:
            from sagelab.tasks.graph.pipeline import load_graph, prepare

            spec, task = self.dataset, self.cfg.task
            graph = load_graph(spec, separator=str(task.separator))
            self._prepared = prepare(
                graph, spec["features"], spec.get("name_property"), float(task.split.val), float(task.split.test),
                int(task.eval_negs), int(task.split.seed),
            )
        return self._prepared

    def datamodule(self) -> Any:
        from sagelab.tasks.graph.data import LinkDataModule

        cfg, layers = self.cfg, int(self.cfg.model.num_layers)
        fanouts = [int(f) for f in cfg.task.fanouts][:layers]
        fanouts += fanouts[-1:] * (layers - len(fanouts))  # a shorter list repeats its last entry
        return LinkDataModule(
            self.prepared(), sampling=str(cfg.task.sampling), fanouts=fanouts, self_loops=cfg.model.arch == "gcn",
            neg_ratio=int(cfg.task.neg_ratio), batch_size=int(cfg.optim.batch_size), seed=int(cfg.seed),
            num_workers=int(cfg.data.num_workers),
        )

    def module(self) -> Any:
        from sagelab.tasks.graph.module import LinkPredictionModule

        data, model, task, optim = self.prepared(), self.cfg.model, self.cfg.task, self.cfg.optim
        module = LinkPredictionModule(
            int(data.x.shape[1]), data.num_nodes, arch=str(model.arch), hidden_dim=int(model.hidden_dim),
            num_layers=int(model.num_layers), dropout=float(model.dropout), aggregator=str(model.aggregator),
            scorer=str(model.scorer), id_embedding=int(task.id_embedding or 0), neg_ratio=int(task.neg_ratio),
            hits_at=[int(k) for k in task.hits_at], lr=float(optim.lr), weight_decay=float(optim.weight_decay),
        )
        module.set_graph_state(data.encoder.state_dict(), data.graph.node_ids, data.names)
        return module

    # -- after evaluation: the seed's "model artifacts, raw embeddings, mapping" -------------
    def on_evaluated(self, runner: Runner, module: Any, metrics: dict[str, float]) -> None:
        if not runner.is_global_zero:
            return
        import numpy as np

        from sagelab.tasks.graph.recommend import full_embeddings

        data = self.prepared()
        h = full_embeddings(module.model, data.x, data.all_edges(), module.model.needs_self_loops)
        out = runner.output_dir / "link_prediction"
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / "embeddings.npy", h.numpy())
        (out / "mapping.json").write_text(json.dumps({"node_ids": data.graph.node_ids, "names": data.names}))
        (out / "features.json").write_text(json.dumps(data.encoder.state_dict()))
        for name in ("embeddings.npy", "mapping.json", "features.json"):
            runner.log_artifact(out / name, "embeddings")
        runner.log_dict(data.describe(), "graph.json")

    # -- task modes ------------------------------------------------------------------------
    def extra_modes(self) -> dict[str, Callable[[Runner], dict[str, Any]]]:
        return {"recommend": self.recommend, "transform": self.transform}

    def recommend(self, runner: Runner) -> dict[str, Any]:
        from sagelab.tasks.graph.recommend import find_node, full_embeddings, recommend

        import torch

        module = runner.load_module()
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
        _print_recommendations(result)
        runner.log_dict(result, "recommendations.json")
        return {"recommend/count": len(top), "recommend/top_score": top[0]["score"] if top else 0.0}

    def transform(self, runner: Runner) -> dict[str, Any]:
        import numpy as np

        from sagelab.tasks.graph.property_graph import read_gremlin_csv
        from sagelab.tasks.graph.recommend import find_node, recommend, transform

        task = self.cfg.task
        module = runner.load_module()
        encoder, trained_ids = module.feature_encoder(), module.node_ids
        updated = read_gremlin_csv(task.transform.nodes, task.transform.edges, separator=str(task.separator))
        result = transform(module.model, encoder, trained_ids, updated, module.model.needs_self_loops)
        names = updated.display_names(self.dataset.get("name_property"))
        queries = list(result.new_nodes)
        if task.node is not None:
            queries.append(find_node(str(task.node), updated.node_ids, names))
        answers = [
            {"node": {"id": updated.node_ids[q], "name": names[q]},
             "recommendations": recommend(module.model, result.embeddings, q, int(task.k), result.edges,
                                          updated.node_ids, names)}
            for q in dict.fromkeys(queries)
        ]
        for answer in answers:
            _print_recommendations(answer)
        out = runner.output_dir / "link_prediction_transform"
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / "embeddings.npy", result.embeddings.numpy())
        (out / "mapping.json").write_text(json.dumps({"node_ids": updated.node_ids, "names": names}))
        for name in ("embeddings.npy", "mapping.json"):
            runner.log_artifact(out / name, "embeddings")
        runner.log_dict(answers, "transform_recommendations.json")
        return {"transform/nodes": updated.num_nodes, "transform/new_nodes": len(result.new_nodes),
                "transform/edges": updated.num_edges}


def _print_recommendations(result: dict[str, Any]) -> None:
    node = result["node"]
    label = node["name"] if node["name"] == node["id"] else f"{node['name']} ({node['id']})"
    print(f"top {len(result['recommendations'])} new links for {label}:")
    for rank, rec in enumerate(result["recommendations"], start=1):
        print(f"  {rank:>2}. {rec['name']:<20} {rec['score']:.3f}")
