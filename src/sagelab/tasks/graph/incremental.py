"""``mode=transform`` and ``mode=recommend`` on an updated export: the trained weights, no retraining.

The updated export is ``task.transform.nodes`` / ``task.transform.edges`` (Gremlin CSV, the schema of the
training export); the graph the checkpoint was trained on is the command's ``task.dataset``, as for
``mode=recommend`` (its node ids must be the checkpoint's).

* ``transform`` embeds every node of the update with the fitted encoding and the trained encoder (inductive:
  new nodes are described by their properties and neighbours), recommends for every new and changed node
  (and ``task.node``), logs the fresh embeddings and ``transform/changes.json`` (:mod:`.changes`: new / changed /
  removed nodes and edges, the nodes whose embeddings moved most) with ``transform/*`` counts as metrics.
* ``recommend`` with ``task.transform.*`` set answers for a node of the update -- one that exists only there
  included -- by embedding the update the same way. It recomputes rather than reading a transform run's
  output: a forward pass costs less than finding, downloading and checking that output, and the answer
  cannot go stale against the checkpoint it was made with.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from sagelab.config import ConfigError

if TYPE_CHECKING:
    from sagelab.context import TaskContext
    from sagelab.tasks.graph.property_graph import PropertyGraph
    from sagelab.tasks.graph.recommend import Transformed
    from sagelab.tasks.graph.task import LinkPredictionTask


def has_update(task: LinkPredictionTask) -> bool:
    """Whether the command names an updated export."""
    return bool(task.cfg.task.transform.get("nodes"))


def embed_update(task: LinkPredictionTask, module: Any) -> tuple[PropertyGraph, Transformed, list[str]]:
    """The updated export, every node's embedding in it (trained weights), and its display names."""
    from sagelab.tasks.graph.property_graph import read_gremlin_csv
    from sagelab.tasks.graph.recommend import transform

    cfg = task.cfg.task
    updated = read_gremlin_csv(cfg.transform.nodes, cfg.transform.edges, separator=str(cfg.separator))
    result = transform(module.model, module.feature_encoder(), module.node_ids, updated, module.model.needs_self_loops)
    return updated, result, updated.display_names(task.dataset.get("name_property"))


def trained_graph_embeddings(task: LinkPredictionTask, module: Any) -> tuple[PropertyGraph, Any]:
    """The graph the checkpoint was trained on (``task.dataset``) and its nodes' embeddings over all its edges."""
    import torch

    from sagelab.tasks.graph.trained import plain
    from sagelab.tasks.graph.recommend import full_embeddings

    data = task.prepared()  # already read (and encoded the same way) to build the module the checkpoint loads into
    graph = data.graph
    if graph.node_ids != module.node_ids:
        raise ConfigError("task.dataset", f"the graph ({graph.source}, {graph.num_nodes} nodes) is not the one the "
                          f"checkpoint was trained on ({len(module.node_ids)} nodes); mode=transform compares the "
                          "update with that one: set task.dataset to the training export.")
    same = plain(data.encoder.state_dict()) == module.graph_state["features"]
    x = data.x if same else torch.from_numpy(module.feature_encoder().transform(graph))
    return graph, full_embeddings(module.model, x, data.all_edges(), module.model.needs_self_loops)


def answers(module: Any, result: Transformed, nodes: list[int], k: int, names: list[str]) -> list[dict[str, Any]]:
    """The top ``k`` of each of ``nodes`` in the updated graph, as ``{node, recommendations}``."""
    from sagelab.tasks.graph.recommend import recommend_many

    ids = result.graph.node_ids
    tops = recommend_many(module.model, result.embeddings, nodes, k, result.edges, ids, names)
    return [{"node": {"id": ids[n], "name": names[n]}, "recommendations": top} for n, top in zip(nodes, tops)]


def transform_mode(task: LinkPredictionTask, context: TaskContext) -> dict[str, Any]:
    """``mode=transform``: embeddings, recommendations for new and changed nodes, and what changed."""
    from sagelab.tasks.graph.changes import compare, embedding_shift
    from sagelab.tasks.graph.recommend import find_node
    from sagelab.tasks.graph.task import log_embeddings, print_recommendations

    cfg = task.cfg.task
    module = context.load_module()
    updated, result, names = embed_update(task, module)
    base, h_old = trained_graph_embeddings(task, module)
    changes = compare(base, updated)
    changes.moved = embedding_shift(h_old.numpy(), base.node_ids, result.embeddings.numpy(), updated.node_ids, names)
    print(f"sagelab: the update has {changes.summary()}", file=sys.stderr)
    index = updated.index_of()
    queries = [index[n] for n in (*changes.new_nodes, *changes.changed_nodes)]
    if cfg.node is not None:
        queries.append(find_node(str(cfg.node), updated.node_ids, names))
    answered = answers(module, result, list(dict.fromkeys(queries)), int(cfg.k), names)
    for one in answered[: int(cfg.transform.printed)]:
        print_recommendations(one)
    if len(answered) > int(cfg.transform.printed):
        print(f"... and {len(answered) - int(cfg.transform.printed)} more in transform_recommendations.json")
    log_embeddings(context, "link_prediction_transform", result.embeddings, updated.node_ids, names)
    context.tracker.log_dict(answered, "transform_recommendations.json")
    context.tracker.log_dict(changes.report(int(cfg.transform.top_moved)), "transform/changes.json")
    return {"transform/nodes": updated.num_nodes, "transform/edges": updated.num_edges,
            **changes.metrics("transform")}


def recommend_in_update(task: LinkPredictionTask, context: TaskContext) -> dict[str, Any]:
    """``mode=recommend`` with ``task.transform.*``: the top ``task.k`` for ``task.node`` of the updated export."""
    from sagelab.tasks.graph.recommend import find_node

    module = context.load_module()
    updated, result, names = embed_update(task, module)
    node = find_node(str(task.cfg.task.node), updated.node_ids, names)
    return {"answer": answers(module, result, [node], int(task.cfg.task.k), names)[0],
            "new_node": float(updated.node_ids[node] not in set(module.node_ids))}
