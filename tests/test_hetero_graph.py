"""Heterogeneous Gremlin CSV: node types from ~label, per-type features, directed typed edges, faults by file and line.

``shop_graph`` writes a tiny export (built here, nothing shipped): 12 ``user``, 12 ``item`` and 3 ``shop`` vertices
under one header (``kind``/``price`` filled only by items, ``city`` only by shops), ``user -bought-> item``,
``item -sold_by-> shop`` and one ``shop -employs-> user`` edge written against the grain, so directions must survive.
Item ``i`` is of kind ``i % 3`` and sold by shop ``i % 3``; user ``u`` buys the items of kind ``u % 3``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sagelab.config import ConfigError
from sagelab.tasks.graph.hetero_graph import read_hetero_csv
from sagelab.tasks.graph.property_graph import read_gremlin_csv

CITIES = ["Oslo", "Lima", "Pune"]


def shop_graph(folder: Path, extra_nodes: str = "", extra_edges: str = "") -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    nodes = ["~id,~label,kind:String,price:Double,city:String"]
    nodes += [f"u{u},user,,," for u in range(12)]
    nodes += [f"i{i},item,k{i % 3},{1.5 + i}," for i in range(12)]
    nodes += [f"s{s},shop,,,{CITIES[s]}" for s in range(3)]
    edges = ["~id,~from,~to,~label"]
    edges += [f"b{u}-{i},u{u},i{i},bought" for u in range(12) for i in range(12) if i % 3 == u % 3 and (u + i) % 4]
    edges += [f"s{i},i{i},s{i % 3},sold_by" for i in range(12)]
    edges += ["e0,s0,u0,employs", "e1,s0,u0,employs"]  # a repeated edge: kept once
    (folder / "nodes.csv").write_text("\n".join(nodes) + "\n" + extra_nodes)
    (folder / "edges.csv").write_text("\n".join(edges) + "\n" + extra_edges)
    return folder / "nodes.csv", folder / "edges.csv"


def test_node_types_per_type_properties_and_directed_edges(tmp_path: Path) -> None:
    graph = read_hetero_csv(*shop_graph(tmp_path))
    assert graph.ntypes == ["user", "item", "shop"]
    assert [graph.num_nodes(t) for t in graph.ntypes] == [12, 12, 3]
    assert graph.etypes == [("user", "bought", "item"), ("item", "sold_by", "shop"), ("shop", "employs", "user")]
    # a type keeps only the columns it fills, with its own nodes' values in file order
    assert graph.nodes["user"].schema() == {}
    assert graph.nodes["item"].schema() == {"kind": "string", "price": "float"}
    assert graph.nodes["shop"].properties["city"].values == CITIES
    assert graph.nodes["item"].node_ids[4] == "i4" and graph.nodes["item"].properties["kind"].values[4] == "k1"
    # directions as written: item -> shop, shop -> user (indices within each type)
    src, dst = graph.edges[("item", "sold_by", "shop")]
    assert src.tolist() == list(range(12)) and dst.tolist() == [i % 3 for i in range(12)]
    assert [a.tolist() for a in graph.edges[("shop", "employs", "user")]] == [[0], [0]]
    assert graph.meta["duplicate_edges"] == 1 and graph.meta["raw_edges"] == graph.meta["duplicate_edges"] + sum(
        graph.num_edges(e) for e in graph.etypes)
    heads, tails = graph.edges[("user", "bought", "item")]
    assert np.all(heads % 3 == tails % 3)
    # the homogeneous reader of the same files still sees one undirected graph
    flat = read_gremlin_csv(*shop_graph(tmp_path))
    assert flat.num_nodes == 27 and flat.num_edges == sum(graph.num_edges(e) for e in graph.etypes)


def test_edge_types_are_found_by_triple_or_unique_relation(tmp_path: Path) -> None:
    graph = read_hetero_csv(*shop_graph(tmp_path))
    assert graph.find_etype(["user", "bought", "item"], "k") == ("user", "bought", "item")
    assert graph.find_etype(["sold_by"], "k") == ("item", "sold_by", "shop")
    with pytest.raises(ConfigError, match=r"task.target_edge: is \['item', 'bought', 'user'\]; the graph .* has the "
                                          r"edge types \[user,bought,item\], \[item,sold_by,shop\]"):
        graph.find_etype(["item", "bought", "user"], "task.target_edge")
    with pytest.raises(ConfigError, match="task.target_node_type: is 'store'"):
        graph.check_ntype("store", "task.target_node_type")


@pytest.mark.parametrize(
    ("extra_nodes", "extra_edges", "where", "message"),
    [
        ("x1,user;admin,,,\n", "", "nodes.csv: line 29:", "vertex ~label 'user;admin' is not one name"),
        ("x1,,,,\n", "", "nodes.csv: line 29:", "vertex ~label '' is empty"),
        ("x1,v.ip,,,\n", "", "nodes.csv: line 29:", "vertex ~label 'v.ip' is not one name"),
        ("", "z1,u1,nobody,bought\n", "edges.csv: line ", "node 'nobody' is not in nodes.csv"),
        ("", "z1,u1,i1,\n", "edges.csv: line ", "edge ~label '' is empty"),
        ("", "z1,u1,i1,rev_bought\n", "edges.csv: line ", "starts with 'rev_', the prefix of the reverse relations"),
    ],
)
def test_bad_labels_and_unknown_endpoints_name_file_and_line(tmp_path: Path, extra_nodes: str, extra_edges: str,
                                                             where: str, message: str) -> None:
    nodes, edges = shop_graph(tmp_path, extra_nodes, extra_edges)
    with pytest.raises(ConfigError) as caught:
        read_hetero_csv(nodes, edges)
    text = str(caught.value)
    assert text.startswith(str(tmp_path / where)) and message in text, text
    if extra_edges:  # the bad row is the file's last line
        last = len((tmp_path / "edges.csv").read_text().splitlines())
        assert f"line {last}:" in text, text


def test_prepared_features_reverse_relations_and_both_graphs(tmp_path: Path) -> None:
    from sagelab.tasks.hetero.prepare import prepare_nodes, relation_name

    graph = read_hetero_csv(*shop_graph(tmp_path))
    data = prepare_nodes(graph, {"shop": {"city": {"type": "category"}}}, None, "item", "kind", [], 0.25, 0.25, 0)
    # kind is the target: not an item feature; price is (min-max, 1 column); shops one-hot their city (+ OTHER)
    assert {t: int(x.shape[1]) for t, x in data.x.items()} == {"user": 0, "item": 1, "shop": 4}
    assert data.classes == ["k0", "k1", "k2"] and sorted(len(m) for m in data.masks.values()) == [3, 3, 6]
    relations = data.relations()
    assert relations[3:] == [("item", "rev_bought", "user"), ("shop", "rev_sold_by", "item"),
                             ("user", "rev_employs", "shop")]
    # R-GCN's graph: one relation per edge type and per reverse, named by the whole triple
    hetero = data.dgl_graph("hetero")
    assert sorted(hetero.canonical_etypes) == sorted((s, relation_name((s, r, d)), d) for s, r, d in relations)
    sold, back = (hetero.edges(etype=relation_name(e)) for e in (relations[1], relations[4]))
    assert [t.tolist() for t in sold] == [list(range(12)), [i % 3 for i in range(12)]]
    assert [t.tolist() for t in back] == [[i % 3 for i in range(12)], list(range(12))]
    # the type-blind graph: the same edges both ways, users 0-11, items 12-23, shops 24-26
    flat = data.dgl_graph("flat")
    pairs = set(zip(*(t.tolist() for t in flat.edges())))
    assert flat.num_nodes() == 27 and flat.num_edges() == hetero.num_edges()  # reverses included in both
    assert {(12 + i, 24 + i % 3) for i in range(12)} | {(24 + i % 3, 12 + i) for i in range(12)} <= pairs
    assert (24, 0) in pairs and (0, 24) in pairs  # shop 0 employs user 0, and back
    assert data.dgl_graph("flat_loops").num_edges() == flat.num_edges() + 27
    # the target's own edges can be dropped from message passing; dropping the target edge type is refused
    dropped = prepare_nodes(graph, {}, None, "item", "kind", [["sold_by"]], 0.25, 0.25, 0)
    assert ("item", "sold_by", "shop") not in dropped.edges
    from sagelab.tasks.hetero.prepare import prepare_links

    with pytest.raises(ConfigError, match="task.drop_edges: drops the target edge type"):
        prepare_links(graph, {}, None, ["bought"], [["bought"]], 0.1, 0.1, 5, 0)


def test_link_split_holds_out_target_edges_with_directed_negatives(tmp_path: Path) -> None:
    from sagelab.tasks.hetero.prepare import prepare_links

    graph = read_hetero_csv(*shop_graph(tmp_path))
    data = prepare_links(graph, {}, None, ["user", "bought", "item"], [], 0.2, 0.2, 6, 0)
    assert data.split is not None
    total = graph.num_edges(("user", "bought", "item"))
    assert sum(data.split.sizes().values()) == total
    kept = data.edges[("user", "bought", "item")]
    held = {tuple(e) for e in np.concatenate([data.split.val, data.split.test]).tolist()}
    assert not held & set(zip(*(k.tolist() for k in kept)))  # held-out edges are not passed messages over
    real = set(zip(*(a.tolist() for a in graph.edges[("user", "bought", "item")])))
    for split in ("val", "test"):
        positives, negatives = getattr(data.split, split), data.negatives[split]
        assert negatives.shape == (len(positives), 6) and negatives.max() < 12
        assert not {(int(u), int(w)) for u, row in zip(positives[:, 0], negatives) for w in row} & real
