"""What changed between two exports of a property graph, and how far the trained embeddings moved.

``mode=transform`` and ``mode=retrain`` log this beside their results, so an update that is larger (or other)
than expected is visible before its embeddings are used:

* nodes by id: new (only in the update), removed (only in the base), changed (in both, with a different label or
  property value; the properties that differ are listed per node);
* undirected edges by their endpoints' ids: new and removed (an edge to a removed node is removed);
* the embedding shift of every node present in both: ``l2`` = ||h_new - h_old|| and the cosine distance
  between the trained encoder's vector over the base graph and over the update (same weights), the largest
  first. A node moves because its own properties changed or because its neighbourhood did, within
  ``model.num_layers`` hops of a change.

Plain numpy and Python: a set difference and a row norm need no library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from sagelab.tasks.graph.property_graph import PropertyGraph


@dataclass
class GraphChanges:
    """Node ids and edge counts that differ between a base export and its update."""

    new_nodes: list[str]
    removed_nodes: list[str]
    changed_nodes: dict[str, list[str]]  # node id -> the properties (or "~label") whose values differ
    new_edges: int
    removed_edges: int
    unchanged_edges: int
    moved: list[dict[str, Any]] = field(default_factory=list)  # largest embedding shift first

    def metrics(self, prefix: str) -> dict[str, float]:
        """Counts (and the shift's max / mean when measured) as ``<prefix>/...`` metrics."""
        out = {f"{prefix}/new_nodes": len(self.new_nodes), f"{prefix}/removed_nodes": len(self.removed_nodes),
               f"{prefix}/changed_nodes": len(self.changed_nodes), f"{prefix}/new_edges": self.new_edges,
               f"{prefix}/removed_edges": self.removed_edges}
        if self.moved:
            shifts = [m["l2"] for m in self.moved]
            out |= {f"{prefix}/max_shift": max(shifts), f"{prefix}/mean_shift": float(np.mean(shifts)),
                    f"{prefix}/moved_nodes": sum(s > 1e-6 for s in shifts)}
        return out

    def report(self, top: int) -> dict[str, Any]:
        """JSON for the ``changes.json`` artifact: counts, the node lists, the ``top`` largest shifts."""
        return {
            "counts": {"new_nodes": len(self.new_nodes), "removed_nodes": len(self.removed_nodes),
                       "changed_nodes": len(self.changed_nodes), "new_edges": self.new_edges,
                       "removed_edges": self.removed_edges, "unchanged_edges": self.unchanged_edges},
            "new_nodes": self.new_nodes, "removed_nodes": self.removed_nodes, "changed_nodes": self.changed_nodes,
            "moved_most": self.moved[:top],
        }

    def summary(self) -> str:
        return (f"{len(self.new_nodes)} new, {len(self.changed_nodes)} changed, {len(self.removed_nodes)} removed "
                f"node(s); {self.new_edges} new, {self.removed_edges} removed edge(s)")


def _cell(prop: Any, i: int) -> Any:
    value = prop.values[i]
    if isinstance(prop.values, np.ndarray):  # a vector property: one row per node
        return tuple(np.asarray(value).tolist())
    return tuple(value) if isinstance(value, list) else value


def id_pair(a: str, b: str) -> tuple[str, str]:
    """An undirected edge by its endpoints' ids: (smaller id, larger id), the same whichever way it was read."""
    return (a, b) if a <= b else (b, a)


def id_edge_keys(graph: PropertyGraph, numbering: dict[str, int]) -> np.ndarray:
    """The undirected edges as sorted unique keys (:func:`~.split.edge_keys`) over ``numbering`` (node id ->
    number, shared by the graphs compared): :func:`id_pair`'s identity in a form numpy's set operations take (a
    Python set of id pairs was a tenth of a transform of a graph with tens of thousands of edges)."""
    from sagelab.tasks.graph.split import edge_keys

    codes = np.fromiter((numbering[n] for n in graph.node_ids), np.int64, graph.num_nodes)
    return np.unique(edge_keys(np.stack([codes[graph.src], codes[graph.dst]], axis=1), len(numbering)))


def shared_numbering(*graphs: PropertyGraph) -> dict[str, int]:
    """One number per node id over ``graphs`` (for :func:`id_edge_keys`)."""
    return {node_id: i for i, node_id in enumerate(dict.fromkeys(n for g in graphs for n in g.node_ids))}


def compare(base: PropertyGraph, updated: PropertyGraph) -> GraphChanges:
    """Nodes and edges of ``updated`` against ``base`` (same schema; the encoder has checked it)."""
    old, new = base.index_of(), updated.index_of()
    changed: dict[str, list[str]] = {}
    shared_props = [p for p in updated.properties if p in base.properties]
    for node_id, j in new.items():
        i = old.get(node_id)
        if i is None:
            continue
        differs = ["~label"] if base.labels[i] != updated.labels[j] else []
        differs += [p for p in shared_props if _cell(base.properties[p], i) != _cell(updated.properties[p], j)]
        if differs:
            changed[node_id] = differs
    numbering = shared_numbering(base, updated)
    before, after = id_edge_keys(base, numbering), id_edge_keys(updated, numbering)
    unchanged = len(np.intersect1d(before, after, assume_unique=True))
    return GraphChanges(
        new_nodes=[n for n in updated.node_ids if n not in old],
        removed_nodes=[n for n in base.node_ids if n not in new],
        changed_nodes=changed,
        new_edges=len(after) - unchanged, removed_edges=len(before) - unchanged, unchanged_edges=unchanged,
    )


def embedding_shift(h_old: Any, old_ids: Sequence[str], h_new: Any, new_ids: Sequence[str],
                    names: Sequence[str]) -> list[dict[str, Any]]:
    """Per node in both graphs: ``{id, name, l2, cosine}`` (cosine distance), largest ``l2`` first."""
    old_index = {n: i for i, n in enumerate(old_ids)}
    rows = [(j, old_index[n]) for j, n in enumerate(new_ids) if n in old_index]
    if not rows:
        return []
    j, i = (np.array(r) for r in zip(*rows))
    a, b = np.asarray(h_old, np.float64)[i], np.asarray(h_new, np.float64)[j]
    l2 = np.linalg.norm(b - a, axis=1)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cosine = 1.0 - np.divide((a * b).sum(1), norms, out=np.ones_like(norms), where=norms > 0)
    order = np.argsort(-l2, kind="stable")
    return [{"id": new_ids[j[k]], "name": names[j[k]], "l2": float(l2[k]), "cosine": float(cosine[k])} for k in order]
