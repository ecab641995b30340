"""The in-memory property graph every reader produces, and the Gremlin CSV load format.

A :class:`PropertyGraph` is what a graph-database export holds: nodes with a string id, a label and
typed properties, and edges between node ids. Link prediction treats the edges as undirected
friendships/citations: :func:`read_gremlin_csv` keeps one edge per unordered pair and drops
self-loops.

The Gremlin load format (Amazon Neptune's bulk-load CSV, also what Neptune export writes):

* ``nodes.csv``: header ``~id,~label,name:String,age:Int,interests:String[]``; a property column is
  ``name:Type`` (Type in String, Bool, Byte, Short, Int, Long, Float, Double, Date; no type means
  String); ``Type[]`` is multi-valued, its cell split on a separator (``;`` unless configured;
  ``\\;`` escapes it). A cardinality suffix such as ``:String(single)`` is accepted.
* ``edges.csv``: header ``~id,~from,~to,~label`` (``~id`` and ``~label`` optional); extra
  property columns are read and ignored.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from sagelab.config import ConfigError
from sagelab.readers.tables import csv_records

NUMERIC_TYPES = {"byte": "int", "short": "int", "int": "int", "long": "int", "float": "float", "double": "float"}
KNOWN_TYPES = {**NUMERIC_TYPES, "string": "string", "bool": "bool", "boolean": "bool", "date": "string"}
_HEADER = re.compile(r"^(?P<name>[^:]+?)(?::(?P<type>[A-Za-z]+)(?P<multi>\[\])?(?:\((?:single|set|list)\))?)?$")


@dataclass
class Property:
    """One node property column: ``kind`` is string/int/float/bool/vector; ``multi`` for ``Type[]``.

    ``values`` holds one entry per node: None when the cell is empty, a list for multi-valued
    columns, an ``(n, d)`` float array for ``vector`` (dense features from the built-in readers).
    """

    name: str
    kind: str
    multi: bool = False
    values: Any = None

    @property
    def type_string(self) -> str:
        return f"{self.kind}{'[]' if self.multi else ''}"


@dataclass
class PropertyGraph:
    """Nodes (ids, labels, properties) and undirected edges as index arrays into the node list."""

    node_ids: list[str]
    labels: list[str]
    properties: dict[str, Property]
    src: np.ndarray
    dst: np.ndarray
    source: str = "<memory>"
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_nodes(self) -> int:
        return len(self.node_ids)

    @property
    def num_edges(self) -> int:
        return int(self.src.shape[0])

    def index_of(self) -> dict[str, int]:
        return {node_id: i for i, node_id in enumerate(self.node_ids)}

    def schema(self) -> dict[str, str]:
        """Property name -> type string; two exports are compatible when these agree."""
        return {name: prop.type_string for name, prop in self.properties.items()}

    def display_names(self, name_property: str | None) -> list[str]:
        """A human name per node: the ``name_property`` value where present, else the id."""
        prop = self.properties.get(name_property) if name_property else None
        if prop is None or prop.multi or prop.kind == "vector":
            return list(self.node_ids)
        return [str(v) if v not in (None, "") else nid for v, nid in zip(prop.values, self.node_ids)]


def undirected_unique(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """One (min, max) pair per unordered edge, self-loops dropped; also returns how many were dropped."""
    src, dst = np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64)
    keep = src != dst
    lo, hi = np.minimum(src[keep], dst[keep]), np.maximum(src[keep], dst[keep])
    pairs = np.unique(np.stack([lo, hi], axis=1), axis=0) if lo.size else np.zeros((0, 2), np.int64)
    return pairs[:, 0].copy(), pairs[:, 1].copy(), int(src.shape[0] - pairs.shape[0])


def parse_header(column: str, path: Path) -> tuple[str, str, bool]:
    """``interests:String[]`` -> ("interests", "string", True); a bad type names file and column."""
    match = _HEADER.match(column.strip())
    if not match:
        raise ConfigError(str(path), f"line 1: cannot parse column header {column!r} (expected name:Type or name:Type[]).")
    type_name = (match.group("type") or "String").lower()
    if type_name not in KNOWN_TYPES:
        raise ConfigError(
            str(path),
            f"line 1: column {column!r} has unknown type {match.group('type')!r}; "
            f"known types: {', '.join(sorted({t.capitalize() for t in KNOWN_TYPES}))}.",
        )
    return match.group("name"), KNOWN_TYPES[type_name], bool(match.group("multi"))


def split_multi(cell: str, separator: str) -> list[str]:
    """Split on ``separator`` unless escaped with a backslash; strip blanks."""
    parts = re.split(rf"(?<!\\){re.escape(separator)}", cell)
    return [p.replace("\\" + separator, separator).strip() for p in parts if p.strip()]


def _convert(cell: str, kind: str, path: Path, line: int, column: str) -> Any:
    try:
        if kind == "int":
            return int(cell)
        if kind == "float":
            return float(cell)
        if kind == "bool":
            low = cell.strip().lower()
            if low not in ("true", "false", "1", "0"):
                raise ValueError(cell)
            return low in ("true", "1")
    except ValueError:
        raise ConfigError(str(path), f"line {line}: column {column!r} expects {kind}, got {cell!r}.") from None
    return cell


def _read_rows(path: Path) -> tuple[list[str], Iterable[tuple[int, list[str]]]]:
    """The header and (line, fields) rows; bytes that are not UTF-8 or broken quoting stop the read by line."""
    if not path.exists():
        raise ConfigError(str(path), "the graph export file does not exist.")
    rows = csv_records(path, delimiter=",")
    first = next(rows, None)
    if first is None:
        raise ConfigError(str(path), "is empty; expected a header line such as ~id,~label,name:String.")
    return [h.strip() for h in first[1]], rows


def _unique(names: list[str], path: Path, what: str = "column") -> None:
    """A name given twice in a header would make one column shadow the other: refused, naming both."""
    first: dict[str, int] = {}
    for position, name in enumerate(names, start=1):
        if name in first:
            raise ConfigError(str(path), f"line 1: {what} {name!r} appears twice "
                                         f"(columns {first[name]} and {position}).")
        first[name] = position


@dataclass
class NodeTable:
    """The rows of a Gremlin nodes file: ids, raw ``~label`` cells, typed property columns, and each node's line."""

    node_ids: list[str]
    labels: list[str]
    properties: dict[str, Property]
    lines: list[int]


def read_node_table(nodes: Path, separator: str = ";", default_label: str = "node") -> NodeTable:
    """Read a Gremlin nodes file (header checks, typed cells, unique ids); every fault names file and line."""
    header, rows = _read_rows(nodes)
    _unique(header, nodes)
    if "~id" not in header:
        raise ConfigError(str(nodes), f"line 1: no ~id column (header: {','.join(header)}).")
    columns = []  # (position, Property)
    for pos, column in enumerate(header):
        if column.startswith("~"):
            continue
        name, kind, multi = parse_header(column, nodes)
        columns.append((pos, Property(name, kind, multi, [])))
    _unique([h if h.startswith("~") else parse_header(h, nodes)[0] for h in header], nodes, "property")
    id_pos, label_pos = header.index("~id"), header.index("~label") if "~label" in header else None
    node_ids: list[str] = []
    labels: list[str] = []
    lines: list[int] = []
    seen: dict[str, int] = {}
    for line, row in rows:
        if len(row) != len(header):
            raise ConfigError(str(nodes), f"line {line}: {len(row)} fields, header has {len(header)}.")
        node_id = row[id_pos].strip()
        if not node_id:
            raise ConfigError(str(nodes), f"line {line}: empty ~id.")
        if node_id in seen:
            raise ConfigError(str(nodes), f"line {line}: duplicate ~id {node_id!r} (first on line {seen[node_id]}).")
        seen[node_id] = line
        node_ids.append(node_id)
        lines.append(line)
        labels.append(row[label_pos].strip() if label_pos is not None else default_label)
        for pos, prop in columns:
            cell = row[pos]
            if cell.strip() == "":
                prop.values.append([] if prop.multi else None)
            elif prop.multi:
                prop.values.append([_convert(v, prop.kind, nodes, line, prop.name) for v in split_multi(cell, separator)])
            else:
                prop.values.append(_convert(cell.strip(), prop.kind, nodes, line, prop.name))
    if not node_ids:
        raise ConfigError(str(nodes), "has a header but no nodes.")
    return NodeTable(node_ids, labels, {prop.name: prop for _, prop in columns}, lines)


def edge_rows(edges: Path, index: Mapping[str, int], nodes_name: str,
              default_label: str = "edge") -> Iterator[tuple[int, int, int, str]]:
    """``(line, from index, to index, raw ~label)`` per row of a Gremlin edges file; an endpoint missing from
    ``index`` (the nodes file ``nodes_name``) stops the read naming file and line."""
    header, rows = _read_rows(edges)
    _unique(header, edges)
    for required in ("~from", "~to"):
        if required not in header:
            raise ConfigError(str(edges), f"line 1: no {required} column (header: {','.join(header)}).")
    from_pos, to_pos = header.index("~from"), header.index("~to")
    label_pos = header.index("~label") if "~label" in header else None
    for line, row in rows:
        if len(row) != len(header):
            raise ConfigError(str(edges), f"line {line}: {len(row)} fields, header has {len(header)}.")
        ends = row[from_pos].strip(), row[to_pos].strip()
        for end in ends:
            if end not in index:
                raise ConfigError(str(edges), f"line {line}: node {end!r} is not in {nodes_name}.")
        yield line, index[ends[0]], index[ends[1]], row[label_pos].strip() if label_pos is not None else default_label


def read_gremlin_csv(nodes: str | Path, edges: str | Path, separator: str = ";") -> PropertyGraph:
    """Read a Gremlin-format nodes/edges CSV export into an undirected :class:`PropertyGraph`."""
    nodes, edges = Path(nodes), Path(edges)
    table = read_node_table(nodes, separator)
    index = {nid: i for i, nid in enumerate(table.node_ids)}
    src, dst = [], []
    for _, s, d, _ in edge_rows(edges, index, nodes.name):
        src.append(s)
        dst.append(d)
    usrc, udst, dropped = undirected_unique(np.array(src, np.int64), np.array(dst, np.int64))
    return PropertyGraph(
        node_ids=table.node_ids,
        labels=table.labels,
        properties=table.properties,
        src=usrc,
        dst=udst,
        source=str(nodes),
        meta={"edges_file": str(edges), "raw_edges": len(src), "dropped_edges": dropped},
    )


def write_gremlin_csv(
    graph: PropertyGraph, nodes: str | Path, edges: str | Path, separator: str = ";", edge_label: str = "knows"
) -> None:
    """Write ``graph`` in the Gremlin load format (the inverse of :func:`read_gremlin_csv`)."""
    type_names = {"string": "String", "int": "Int", "float": "Double", "bool": "Bool"}
    props = [p for p in graph.properties.values() if p.kind != "vector"]
    Path(nodes).parent.mkdir(parents=True, exist_ok=True)
    with Path(nodes).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["~id", "~label"] + [f"{p.name}:{type_names[p.kind]}{'[]' if p.multi else ''}" for p in props])
        for i, node_id in enumerate(graph.node_ids):
            cells = []
            for p in props:
                value = p.values[i]
                if p.multi:
                    cells.append(separator.join(str(v).replace(separator, "\\" + separator) for v in value or []))
                else:
                    cells.append("" if value is None else str(value).lower() if p.kind == "bool" else str(value))
            writer.writerow([node_id, graph.labels[i]] + cells)
    with Path(edges).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["~id", "~from", "~to", "~label"])
        for e, (s, d) in enumerate(zip(graph.src.tolist(), graph.dst.tolist())):
            writer.writerow([f"e{e}", graph.node_ids[s], graph.node_ids[d], edge_label])
