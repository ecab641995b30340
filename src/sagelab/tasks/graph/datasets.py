"""Readers for the real graphs sagelab ships or points at: Cora (Planetoid files) and Twitch (MUSAE).

* Cora is read straight from the Planetoid split files (``ind.cora.*``, Python pickles of scipy
  matrices) into a :class:`PropertyGraph` whose one property ``words`` is the 1,433-dimensional
  bag-of-words vector; the citation graph becomes 5,278 undirected edges.
* Twitch (GPL-3.0, so never copied into the project) is converted by :func:`convert_twitch` into a
  Gremlin-format ``nodes.csv``/``edges.csv`` with the games each user likes as the multi-valued
  property ``interests:String[]``, so that it reaches the model through the same CSV path a
  graph-database export would::

      python -m sagelab.tasks.graph.datasets twitch /work/shared/data/graph/twitch .cache/graph/twitch
"""

from __future__ import annotations

import argparse
import csv
import pickle
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from sagelab.config import ConfigError
from sagelab.tasks.graph.property_graph import Property, PropertyGraph, undirected_unique, write_gremlin_csv

PLANETOID_PARTS = ("x", "tx", "allx", "graph")


def _unpickle(path: Path) -> object:
    with path.open("rb") as handle:
        return pickle.load(handle, encoding="latin1")  # noqa: S301 -- trusted dataset files


def read_planetoid(root: str | Path, name: str = "cora") -> PropertyGraph:
    """Read ``<root>/ind.<name>.*`` (the Planetoid release layout) as an undirected graph."""
    root = Path(root)
    for part in PLANETOID_PARTS + ("test.index",):
        path = root / f"ind.{name}.{part}"
        if not path.exists():
            raise ConfigError("task.graph.path", f"the Planetoid file '{path}' does not exist.")
    import scipy.sparse as sp

    tx, allx = (_unpickle(root / f"ind.{name}.{part}") for part in ("tx", "allx"))
    adjacency: dict[int, list[int]] = _unpickle(root / f"ind.{name}.graph")  # type: ignore[assignment]
    test_index = [int(line) for line in (root / f"ind.{name}.test.index").read_text().split()]
    # Test rows come last in tx but belong at the (unsorted) positions in test.index.
    features = sp.vstack([allx, tx]).tolil()
    order = np.sort(test_index)
    features[test_index, :] = features[order, :]
    dense = np.asarray(features.todense(), dtype=np.float32)
    num_nodes = dense.shape[0]
    src = [s for s, nbrs in adjacency.items() for _ in nbrs]
    dst = [d for nbrs in adjacency.values() for d in nbrs]
    usrc, udst, dropped = undirected_unique(np.array(src), np.array(dst))
    if usrc.size and max(usrc.max(), udst.max()) >= num_nodes:
        raise ConfigError("task.graph.path", f"ind.{name}.graph names nodes beyond the {num_nodes} feature rows.")
    return PropertyGraph(
        node_ids=[str(i) for i in range(num_nodes)],
        labels=[name] * num_nodes,
        properties={"words": Property("words", "vector", False, dense)},
        src=usrc,
        dst=udst,
        source=str(root / f"ind.{name}.graph"),
        meta={"raw_edges": len(src), "dropped_edges": dropped},
    )


def read_twitch(root: str | Path) -> PropertyGraph:
    """Read the MUSAE Twitch files (edges.csv, features.csv, target.csv) into a :class:`PropertyGraph`."""
    root = Path(root)
    for part in ("edges.csv", "features.csv"):
        if not (root / part).exists():
            raise ConfigError(str(root / part), "the Twitch file does not exist.")
    edges = np.loadtxt(root / "edges.csv", delimiter=",", skiprows=1, dtype=np.int64, ndmin=2)
    liked: dict[int, list[int]] = defaultdict(list)
    with (root / "features.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            if float(row["value"]) != 0:
                liked[int(row["node_id"])].append(int(row["feature_id"]))
    target: dict[int, int] = {}
    if (root / "target.csv").exists():
        with (root / "target.csv").open(newline="") as handle:
            target = {int(r["id"]): int(r["target"]) for r in csv.DictReader(handle)}
    num_nodes = int(max(edges.max() + 1, max(liked, default=-1) + 1, max(target, default=-1) + 1))
    usrc, udst, dropped = undirected_unique(edges[:, 0], edges[:, 1])
    properties = {
        "interests": Property("interests", "string", True, [[f"g{f}" for f in sorted(liked.get(i, []))] for i in range(num_nodes)]),
    }
    if target:
        properties["target"] = Property("target", "int", False, [target.get(i) for i in range(num_nodes)])
    return PropertyGraph(
        node_ids=[f"u{i}" for i in range(num_nodes)],
        labels=["user"] * num_nodes,
        properties=properties,
        src=usrc,
        dst=udst,
        source=str(root / "edges.csv"),
        meta={"raw_edges": int(edges.shape[0]), "dropped_edges": dropped},
    )


def convert_twitch(root: str | Path, out_dir: str | Path, separator: str = ";") -> tuple[Path, Path]:
    """Write Twitch as Gremlin ``nodes.csv``/``edges.csv`` under ``out_dir``; return both paths."""
    graph = read_twitch(root)
    out_dir = Path(out_dir)
    nodes, edges = out_dir / "nodes.csv", out_dir / "edges.csv"
    write_gremlin_csv(graph, nodes, edges, separator=separator, edge_label="follows")
    return nodes, edges


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Convert a shipped graph to the Gremlin nodes/edges CSV format.")
    parser.add_argument("dataset", choices=["twitch", "cora"])
    parser.add_argument("source", help="folder with the original files")
    parser.add_argument("out_dir", help="folder to write nodes.csv and edges.csv to")
    args = parser.parse_args(argv)
    out = Path(args.out_dir)
    if args.dataset == "twitch":
        graph = read_twitch(args.source)
    else:  # Cora's word vector becomes a multi-valued property of the words present
        graph = read_planetoid(args.source)
        words = graph.properties.pop("words").values
        graph.properties["words"] = Property("words", "string", True, [[f"w{j}" for j in np.flatnonzero(r)] for r in words])
    write_gremlin_csv(graph, out / "nodes.csv", out / "edges.csv", edge_label="follows" if args.dataset == "twitch" else "cites")
    print(f"wrote {graph.num_nodes} nodes and {graph.num_edges} undirected edges to {out}/nodes.csv, edges.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
