"""From a heterogeneous dataset description to what training reads: per-type features, the target, the graph.

* **Features**: one :class:`~sagelab.tasks.graph.features.FeatureEncoder` per node type, fitted on that type's own
  property columns (``task.features.<type>.<property>``: the homogeneous family's encodings, per label).
* **Link prediction** (:func:`prepare_links`): the target edge type's edges are split (train / val / test) with a
  seed; each held-out edge gets ``eval_negs`` fixed negatives ``(u, w)`` with ``w`` of the target's tail type and
  ``(u, w)`` no edge of that type. Held-out edges are removed from the message-passing graph.
* **Node classification** (:func:`prepare_nodes`): a single-valued property of the target node type is the class
  (never a feature of that type); its labelled nodes are split at random with a seed.
* **Message-passing graph**: every kept edge type plus its reverse relation (``rev_<relation>``, as R-GCN adds
  them): a DGL heterograph for R-GCN, and the same edges flattened into one homogeneous graph (node types numbered
  one after another) for the type-blind baseline. ``task.drop_edges`` removes edge types entirely (e.g. a movie's
  genre edges when its genre is the target: keeping them would hand the model the answer).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from sagelab.config import ConfigError
from sagelab.tasks.graph.features import FeatureEncoder, resolve_specs
from sagelab.tasks.graph.hetero_graph import Etype, HeteroPropertyGraph, reverse_name
from sagelab.tasks.graph.split import EdgeSplit, sample_eval_negatives, split_edges
from sagelab.tasks.nodes.prepare import class_targets, node_split


@dataclass
class HeteroPrepared:
    """Features per node type, the message-passing edges, and the target (edges or node classes) with its split."""

    graph: HeteroPropertyGraph
    encoders: dict[str, FeatureEncoder]
    x: dict[str, Any]  # node type -> torch.Tensor (num_nodes, dim), dim may be 0
    edges: dict[Etype, tuple[np.ndarray, np.ndarray]]  # the message-passing graph before reverses
    target_edge: Etype | None = None
    split: EdgeSplit | None = None
    negatives: dict[str, np.ndarray] = field(default_factory=dict)  # "val" / "test" -> (P, K) tails
    target_node_type: str | None = None
    y: Any = None  # torch.Tensor (num target-type nodes,), class index or -1
    classes: list[Any] = field(default_factory=list)
    masks: dict[str, Any] = field(default_factory=dict)  # "train" / "val" / "test" -> node indices (target type)
    _graphs: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def ntypes(self) -> list[str]:
        return self.graph.ntypes

    def offset(self, ntype: str) -> int:
        """Where ``ntype``'s nodes start in the flattened graph (node types in :attr:`ntypes` order)."""
        return sum(self.graph.num_nodes(t) for t in self.ntypes[: self.ntypes.index(ntype)])

    def relations(self) -> list[Etype]:
        """The message-passing relations: each kept edge type, then each one's reverse."""
        return [*self.edges, *((d, reverse_name(r), s) for s, r, d in self.edges)]

    def dgl_graph(self, flavour: str) -> Any:
        """The message-passing graph, built once per flavour: ``hetero`` (R-GCN: a DGL heterograph whose relations
        are named by :func:`relation_name`), ``flat`` (a homogeneous GNN: every edge, both ways, nodes numbered type
        by type) or ``flat_loops`` (the same with a self-loop per node, for GCN)."""
        if flavour not in self._graphs:
            self._graphs[flavour] = hetero_graph(self) if flavour == "hetero" else \
                flat_graph(self, self_loops=flavour == "flat_loops")
        return self._graphs[flavour]

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            **self.graph.describe(),
            "message_passing": {",".join(e): int(len(s)) for e, (s, _) in self.edges.items()},
            "features": {t: [f"{p}:{k}:{d}" for p, k, d in enc.dims() if k != "none"]
                         for t, enc in self.encoders.items()},
        }
        if self.split is not None:
            out.update({"target_edge": list(self.target_edge or ()),
                        **{f"{k}_edges": v for k, v in self.split.sizes().items()}})
        if self.target_node_type is not None:
            out.update({"target_node_type": self.target_node_type, "classes": [str(c) for c in self.classes],
                        **{f"{k}_nodes": int(len(v)) for k, v in self.masks.items()}})
        return out


def merge_features(base: Mapping[str, Any] | None, override: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """``task.features`` (per type, per property) merged over a dataset's own, one property spec at a time."""
    merged = {t: dict(props or {}) for t, props in (base or {}).items()}
    for ntype, props in (override or {}).items():
        into = merged.setdefault(ntype, {})
        for prop, spec in (props or {}).items():
            into[prop] = {**(into.get(prop) or {}), **(spec or {})}
    return merged


def encode(graph: HeteroPropertyGraph, features: Mapping[str, Any], name_property: str | None,
           no_feature: Mapping[str, str] | None = None) -> tuple[dict[str, FeatureEncoder], dict[str, Any]]:
    """One fitted encoder and feature matrix per node type; ``no_feature`` = {type: property} kept out (a target)."""
    import torch

    for ntype in features:
        graph.check_ntype(ntype, f"task.features.{ntype}")
    encoders, x = {}, {}
    for ntype, nodes in graph.nodes.items():
        given = dict(features.get(ntype) or {})
        if no_feature and ntype in no_feature:
            given[no_feature[ntype]] = {"type": "none"}
        encoders[ntype] = FeatureEncoder.fit(nodes, resolve_specs(nodes, given, name_property,
                                                                  prefix=f"task.features.{ntype}"))
        x[ntype] = torch.from_numpy(encoders[ntype].transform(nodes))
    return encoders, x


def kept_edges(graph: HeteroPropertyGraph, drop: Sequence[Sequence[str]]) -> dict[Etype, tuple[np.ndarray, np.ndarray]]:
    """Every edge type except those ``task.drop_edges`` names."""
    dropped = {graph.find_etype(spec, "task.drop_edges") for spec in drop}
    return {e: pair for e, pair in graph.edges.items() if e not in dropped}


def prepare_links(graph: HeteroPropertyGraph, features: Mapping[str, Any], name_property: str | None,
                  target: Sequence[str], drop: Sequence[Sequence[str]], val: float, test: float, eval_negs: int,
                  seed: int) -> HeteroPrepared:
    """Split the target edge type, draw its evaluation negatives, keep only its training edges for message passing."""
    etype = graph.find_etype(target, "task.target_edge")
    edges = kept_edges(graph, drop)
    if etype not in edges:
        raise ConfigError("task.drop_edges", f"drops the target edge type [{','.join(etype)}].")
    src, dst = graph.edges[etype]
    heads, tails = graph.num_nodes(etype[0]), graph.num_nodes(etype[2])
    split = split_edges(src, dst, heads, val, test, seed)
    everything = np.stack([src, dst], axis=1)
    negatives = {name: sample_eval_negatives(part, everything, heads, eval_negs, seed + offset, num_tails=tails)
                 if len(part) else np.zeros((0, eval_negs), np.int64)
                 for offset, (name, part) in enumerate((("val", split.val), ("test", split.test)), start=1)}
    edges[etype] = (split.train[:, 0].copy(), split.train[:, 1].copy())
    encoders, x = encode(graph, features, name_property)
    return HeteroPrepared(graph=graph, encoders=encoders, x=x, edges=edges, target_edge=etype, split=split,
                          negatives=negatives)


def prepare_nodes(graph: HeteroPropertyGraph, features: Mapping[str, Any], name_property: str | None,
                  ntype: str, target: str, drop: Sequence[Sequence[str]], val: float, test: float,
                  seed: int) -> HeteroPrepared:
    """Class targets of ``ntype`` from its property ``target``, a random split of its labelled nodes."""
    import torch

    nodes = graph.nodes[graph.check_ntype(ntype, "task.target_node_type")]
    if ((features.get(ntype) or {}).get(target) or {}).get("type", "none") != "none":
        raise ConfigError(f"task.features.{ntype}.{target}", f"{target!r} is the target (task.target); encoding it "
                          "as a feature would give the answer away: leave it out or set type: none.")
    y, classes = class_targets(nodes, target)
    masks = node_split(nodes, y >= 0, "random", val, test, seed)
    encoders, x = encode(graph, features, name_property, no_feature={ntype: target})
    return HeteroPrepared(graph=graph, encoders=encoders, x=x, edges=kept_edges(graph, drop), target_node_type=ntype,
                          y=torch.from_numpy(y), classes=classes,
                          masks={k: torch.from_numpy(v) for k, v in masks.items()})


def relation_name(etype: Etype) -> str:
    """A relation's name in the message-passing heterograph: the whole triple, so that one edge label joining two
    pairs of types is two relations with two weights (``|`` is no part of a valid label)."""
    return "|".join(etype)


def hetero_graph(data: HeteroPrepared) -> Any:
    """The DGL heterograph of :meth:`HeteroPrepared.relations` (each kept edge type and its reverse)."""
    import torch

    from sagelab.tasks.graph.dgl_shim import import_dgl

    pairs = {**data.edges, **{(d, reverse_name(r), s): (dst, src) for (s, r, d), (src, dst) in data.edges.items()}}
    spec = {(s, relation_name((s, r, d)), d): (torch.as_tensor(a, dtype=torch.int64),
                                                torch.as_tensor(b, dtype=torch.int64))
            for (s, r, d), (a, b) in pairs.items()}
    return import_dgl().heterograph(spec, num_nodes_dict={t: data.graph.num_nodes(t) for t in data.ntypes})


def flat_graph(data: HeteroPrepared, self_loops: bool) -> Any:
    """Every message-passing edge (both directions) in one homogeneous DGL graph, node types numbered one after
    another in :attr:`HeteroPrepared.ntypes` order (:meth:`HeteroPrepared.offset`); types are forgotten."""
    import torch

    from sagelab.tasks.graph.dgl_shim import import_dgl

    dgl = import_dgl()
    src = np.concatenate([s + data.offset(e[0]) for e, (s, _) in data.edges.items()] or [np.zeros(0, np.int64)])
    dst = np.concatenate([d + data.offset(e[2]) for e, (_, d) in data.edges.items()] or [np.zeros(0, np.int64)])
    both = (torch.as_tensor(np.concatenate([src, dst])), torch.as_tensor(np.concatenate([dst, src])))
    graph = dgl.graph(both, num_nodes=sum(data.graph.num_nodes(t) for t in data.ntypes))
    return dgl.add_self_loop(graph) if self_loops else graph
