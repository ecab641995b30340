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
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from sagelab.config import ConfigError
from sagelab.tasks.graph.property_graph import Property, PropertyGraph, undirected_unique, write_gremlin_csv

PLANETOID_PARTS = ("x", "tx", "allx", "graph")

# What the Planetoid release pickles hold (Python 2 pickles: protocol 2, ``__builtin__``), under the module
# names numpy and scipy have used for it. Anything else -- a pickle can call any importable function -- is
# refused: the files come from a path in the config, and pickle.load would run whatever they name.
_BUILTINS = ("list", "dict", "tuple", "set", "int", "float", "bool", "str", "object")
_SAFE_GLOBALS = {
    *((module, name) for module in ("builtins", "__builtin__") for name in _BUILTINS),
    ("collections", "defaultdict"), ("collections", "OrderedDict"),
    ("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    *((module, name) for module in ("numpy.core.multiarray", "numpy._core.multiarray")
      for name in ("_reconstruct", "scalar")),
    *((module, f"{kind}_matrix") for module in ("scipy.sparse", "scipy.sparse.csr", "scipy.sparse._csr",
                                                 "scipy.sparse.csc", "scipy.sparse._csc", "scipy.sparse.coo",
                                                 "scipy.sparse._coo") for kind in ("csr", "csc", "coo")),
}


class _PlanetoidUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _SAFE_GLOBALS:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which a Planetoid file never holds")
        with warnings.catch_warnings():  # scipy.sparse.csr: the 2015 files' module name, deprecated since
            warnings.simplefilter("ignore", DeprecationWarning)
            return super().find_class(module, name)


def _unpickle(path: Path) -> object:
    """One Planetoid pickle, through the allow-list above; anything wrong with it names the file."""
    try:
        with path.open("rb") as handle:
            return _PlanetoidUnpickler(handle, encoding="latin1").load()
    except Exception as err:  # truncated (EOFError), corrupt (UnpicklingError, ValueError ...), refused global
        raise ConfigError(str(path), f"is not a readable Planetoid file ({type(err).__name__}: {err}).") from None


def _matrix(path: Path) -> Any:
    import scipy.sparse as sp

    value = _unpickle(path)
    if not (sp.issparse(value) or isinstance(value, np.ndarray)) or value.ndim != 2:
        raise ConfigError(str(path), f"holds a {type(value).__name__}, not a 2-D feature matrix.")
    return value


def _adjacency(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(source, target) node indices of the adjacency lists in ``ind.<name>.graph``."""
    adjacency = _unpickle(path)
    try:
        if not isinstance(adjacency, dict):
            raise TypeError(f"a {type(adjacency).__name__}")
        src = np.array([int(s) for s, nbrs in adjacency.items() for _ in nbrs], dtype=np.int64)
        dst = np.array([int(d) for nbrs in adjacency.values() for d in nbrs], dtype=np.int64)
    except (TypeError, ValueError) as err:
        raise ConfigError(str(path), f"is not a dict of node -> neighbour list ({err}).") from None
    return src, dst


def _test_index(path: Path) -> list[int]:
    """The node index of each ``tx`` row, one per line, in ``tx``'s (unsorted) order."""
    index = []
    for line, text in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if text.strip():
            if not text.strip().isdigit():
                raise ConfigError(str(path), f"line {line}: {text.strip()[:40]!r} is not a node index.")
            index.append(int(text))
    return index


def _dense(matrix: Any) -> np.ndarray:
    return np.asarray(matrix.todense() if hasattr(matrix, "todense") else matrix, dtype=np.float32)


def _class_of(one_hot: np.ndarray) -> np.ndarray:
    """Row-wise class index of a one-hot label matrix; -1 for an all-zero row (an unlabelled node)."""
    return np.where(one_hot.sum(1) > 0, one_hot.argmax(1), -1)


def read_planetoid(root: str | Path, name: str = "cora", labels: bool = False) -> PropertyGraph:
    """Read ``<root>/ind.<name>.*`` (the Planetoid release layout) as an undirected graph.

    Features are ``allx`` (the first rows) and ``tx``, whose row ``i`` belongs to node ``test.index[i]``. The
    test indices may leave gaps -- nodes of the graph that are in no feature file (Citeseer's 15) -- so the
    node count is the largest test index + 1 and a gap is an isolated-in-features node with a zero row, as
    the reference GCN code pads them (``test_idx_range_full`` in tkipf/gcn's ``utils.py``).

    ``labels=True`` also reads ``y``, ``ty``, ``ally`` into the int property ``label`` (None where the
    one-hot row is empty or the node is a gap) and puts the standard split in ``meta["planetoid_split"]``:
    train = the first ``len(y)`` nodes, validation the next 500, test the test indices (Kipf & Welling).
    Link prediction leaves labels out, so its features never see them.
    """
    root = Path(root)
    parts = PLANETOID_PARTS + (("y", "ty", "ally") if labels else ()) + ("test.index",)
    for part in parts:
        path = root / f"ind.{name}.{part}"
        if not path.exists():
            raise ConfigError(str(path), "the Planetoid file does not exist.")

    tx, allx = (_matrix(root / f"ind.{name}.{part}") for part in ("tx", "allx"))
    src, dst = _adjacency(root / f"ind.{name}.graph")
    index_file = root / f"ind.{name}.test.index"
    test_index = _test_index(index_file)
    known = allx.shape[0]
    if (tx.shape[1] != allx.shape[1] or len(test_index) != tx.shape[0] or len(set(test_index)) != len(test_index)
            or min(test_index, default=known) < known):
        raise ConfigError(str(index_file), f"does not fit the features: {len(test_index)} test indices "
                          f"({len(set(test_index))} distinct) from {min(test_index, default=0)} to "
                          f"{max(test_index, default=0)} for tx {tx.shape} and allx {allx.shape}; expected "
                          f"{tx.shape[0]} distinct indices from {known} up.")
    num_nodes = max(test_index, default=known - 1) + 1
    dense = np.zeros((num_nodes, allx.shape[1]), dtype=np.float32)  # gaps stay zero: featureless nodes
    dense[:known] = _dense(allx)
    dense[test_index] = _dense(tx)  # tx row i is node test_index[i]
    usrc, udst, dropped = undirected_unique(src, dst)
    if usrc.size and (min(usrc.min(), udst.min()) < 0 or max(usrc.max(), udst.max()) >= num_nodes):
        raise ConfigError(str(root / f"ind.{name}.graph"), f"names nodes beyond the {num_nodes} feature rows.")
    properties = {"words": Property("words", "vector", False, dense)}
    meta: dict[str, Any] = {"raw_edges": len(src), "dropped_edges": dropped,
                            "featureless_nodes": num_nodes - known - len(test_index)}
    if labels:
        label, meta["planetoid_split"] = _planetoid_labels(root, name, num_nodes, known, test_index)
        properties["label"] = Property("label", "int", False, label)
    return PropertyGraph(
        node_ids=[str(i) for i in range(num_nodes)],
        labels=[name] * num_nodes,
        properties=properties,
        src=usrc,
        dst=udst,
        source=str(root / f"ind.{name}.graph"),
        meta=meta,
    )


def _planetoid_labels(root: Path, name: str, num_nodes: int, known: int,
                      test_index: list[int]) -> tuple[list[int | None], dict[str, list[int]]]:
    """Class per node from ``ally`` / ``ty`` and the standard split sized by ``y`` (see :func:`read_planetoid`)."""
    y, ty, ally = (_dense(_matrix(root / f"ind.{name}.{part}")) for part in ("y", "ty", "ally"))
    for part, matrix, rows in (("ally", ally, known), ("ty", ty, len(test_index))):
        if matrix.shape != (rows, y.shape[1]):
            raise ConfigError(str(root / f"ind.{name}.{part}"), f"holds labels of shape {matrix.shape}; expected "
                              f"({rows}, {y.shape[1]}) for its feature rows and the classes of ind.{name}.y.")
    if y.shape[0] > known:
        raise ConfigError(str(root / f"ind.{name}.y"), f"has {y.shape[0]} rows, more than the {known} of allx.")
    classes = np.full(num_nodes, -1, dtype=np.int64)
    classes[:known] = _class_of(ally)
    classes[test_index] = _class_of(ty)
    split = {"train": list(range(y.shape[0])), "val": list(range(y.shape[0], min(y.shape[0] + 500, known))),
             "test": sorted(test_index)}
    return [None if c < 0 else int(c) for c in classes], split


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
