"""Heterogeneous property graphs: a Gremlin CSV export with several vertex and edge ``~label`` values.

:func:`read_hetero_csv` reads the same files as :func:`~.property_graph.read_gremlin_csv` but keeps what the
homogeneous reader throws away: each vertex ``~label`` is a node type and each edge, typed by its
``(from label, edge label, to label)`` triple (DGL's canonical edge type), keeps its direction. Per node type the
nodes form a :class:`~.property_graph.PropertyGraph` of their own (ids, and only the property columns that type
fills: an export has one header for every label), so the existing property encoders fit per property per label.

Labels must be single names (letters, digits, ``_`` and ``-``; they name PyTorch modules, which refuse ``.``):
Neptune's ``a;b`` multi-label vertices have no one node type, and a blank label has none at all. Edge labels may not start with ``rev_``, the prefix of the reverse relations
added for message passing (:func:`reverse_name`). Every fault names the file and line (one ``ConfigError`` line).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sagelab.config import ConfigError
from sagelab.tasks.graph.property_graph import Property, PropertyGraph, edge_rows, read_node_table

REVERSE_PREFIX = "rev_"
_LABEL = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]*$")

Etype = tuple[str, str, str]


def reverse_name(relation: str) -> str:
    """The relation name of an edge type's reverse (``rated`` -> ``rev_rated``), as R-GCN adds them."""
    return REVERSE_PREFIX + relation


@dataclass
class HeteroPropertyGraph:
    """Node types (each its own :class:`PropertyGraph` without edges) and directed, typed edges.

    ``edges[(src type, relation, dst type)] = (src, dst)``: int64 indices into the two types' node lists, one row
    per distinct directed pair (repeats are dropped and counted in ``meta["duplicate_edges"]``).
    """

    nodes: dict[str, PropertyGraph]
    edges: dict[Etype, tuple[np.ndarray, np.ndarray]]
    source: str = "<memory>"
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def ntypes(self) -> list[str]:
        return list(self.nodes)

    @property
    def etypes(self) -> list[Etype]:
        return list(self.edges)

    def num_nodes(self, ntype: str) -> int:
        return self.nodes[ntype].num_nodes

    def num_edges(self, etype: Etype) -> int:
        return int(self.edges[etype][0].shape[0])

    def find_etype(self, spec: Sequence[str] | str, key: str) -> Etype:
        """``[user, rated, movie]`` or a relation name unique among the edge types -> the canonical edge type;
        anything else is one line naming ``key`` and the edge types there are."""
        known = ", ".join("[" + ",".join(e) + "]" for e in self.etypes)
        parts = [spec] if isinstance(spec, str) else [str(p) for p in spec]
        if len(parts) == 3 and tuple(parts) in self.edges:
            return tuple(parts)  # type: ignore[return-value]
        if len(parts) == 1:
            matches = [e for e in self.etypes if e[1] == parts[0]]
            if len(matches) == 1:
                return matches[0]
        raise ConfigError(key, f"is {parts!r}; the graph ({self.source}) has the edge types {known}.")

    def check_ntype(self, ntype: str, key: str) -> str:
        if ntype not in self.nodes:
            raise ConfigError(key, f"is {ntype!r}; the graph ({self.source}) has the node types "
                                   f"{', '.join(self.ntypes)}.")
        return ntype

    def describe(self) -> dict[str, Any]:
        return {"node_types": {t: g.num_nodes for t, g in self.nodes.items()},
                "edge_types": {",".join(e): self.num_edges(e) for e in self.etypes}}


def _check_label(label: str, path: Path, line: int, what: str) -> str:
    if not _LABEL.match(label):
        why = "is empty" if not label else "is not one name (letters, digits, _ and -; multi-label vertices are " \
                                           "not supported)"
        raise ConfigError(str(path), f"line {line}: {what} ~label {label!r} {why}.")
    if what == "edge" and label.startswith(REVERSE_PREFIX):
        raise ConfigError(str(path), f"line {line}: edge ~label {label!r} starts with {REVERSE_PREFIX!r}, the prefix "
                                     "of the reverse relations added for message passing; rename it.")
    return label


def _subset(props: dict[str, Property], rows: np.ndarray) -> dict[str, Property]:
    """The property columns with at least one value among ``rows``, restricted to those rows."""
    out = {}
    for name, prop in props.items():
        values = [prop.values[i] for i in rows]
        if any(v not in (None, []) for v in values):
            out[name] = Property(prop.name, prop.kind, prop.multi, values)
    return out


def read_hetero_csv(nodes: str | Path, edges: str | Path, separator: str = ";") -> HeteroPropertyGraph:
    """Read a Gremlin nodes/edges export into a :class:`HeteroPropertyGraph` (types from ``~label``)."""
    nodes, edges = Path(nodes), Path(edges)
    table = read_node_table(nodes, separator)
    for label, line in zip(table.labels, table.lines):
        _check_label(label, nodes, line, "vertex")
    labels = np.array(table.labels, dtype=object)
    per_type: dict[str, PropertyGraph] = {}
    local = np.zeros(len(table.node_ids), dtype=np.int64)  # each node's index within its type
    for ntype in dict.fromkeys(table.labels):
        rows = np.flatnonzero(labels == ntype)
        local[rows] = np.arange(len(rows))
        per_type[ntype] = PropertyGraph(
            node_ids=[table.node_ids[i] for i in rows], labels=[ntype] * len(rows),
            properties=_subset(table.properties, rows), src=np.zeros(0, np.int64), dst=np.zeros(0, np.int64),
            source=f"{nodes} ({ntype})",
        )
    index = {nid: i for i, nid in enumerate(table.node_ids)}
    pairs: dict[Etype, list[tuple[int, int]]] = {}
    raw = 0
    for line, s, d, relation in edge_rows(edges, index, nodes.name):
        etype = (table.labels[s], _check_label(relation, edges, line, "edge"), table.labels[d])
        pairs.setdefault(etype, []).append((int(local[s]), int(local[d])))
        raw += 1
    typed: dict[Etype, tuple[np.ndarray, np.ndarray]] = {}
    for etype, rows in pairs.items():
        unique = np.unique(np.array(rows, dtype=np.int64), axis=0)
        typed[etype] = (unique[:, 0].copy(), unique[:, 1].copy())
    kept = sum(len(s) for s, _ in typed.values())
    return HeteroPropertyGraph(nodes=per_type, edges=typed, source=str(nodes),
                               meta={"edges_file": str(edges), "raw_edges": raw, "duplicate_edges": raw - kept})
