"""Readers: Gremlin-format property-graph CSV, the Planetoid Cora files, the Twitch converter."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from sagelab.config import PROJECT_ROOT, ConfigError
from sagelab.tasks.graph.datasets import convert_twitch, read_planetoid
from sagelab.tasks.graph.property_graph import read_gremlin_csv, write_gremlin_csv

EXAMPLE = PROJECT_ROOT / "data" / "graph" / "example"


def write(path: Path, text: str) -> Path:
    path.write_text(text.lstrip())
    return path


@pytest.fixture
def export(tmp_path: Path) -> tuple[Path, Path]:
    nodes = write(tmp_path / "nodes.csv", """
~id,~label,name:String,age:Int,score:Double,active:Bool,interests:String[],tags:String[](set)
a,person,Ann,31,0.5,true,chess|go,x
b,person,Bob,,1.5,false,,
c,person,"Cy, Jr",40,2,1,poker|chess\\|checkers,y|z
""")
    edges = write(tmp_path / "edges.csv", """
~id,~from,~to,~label
e1,a,b,knows
e2,b,a,knows
e3,c,c,knows
e4,a,c,knows
""")
    return nodes, edges


def test_typed_columns_multi_values_and_undirected_edges(export: tuple[Path, Path]) -> None:
    graph = read_gremlin_csv(*export, separator="|")
    assert graph.node_ids == ["a", "b", "c"]
    assert graph.schema() == {"name": "string", "age": "int", "score": "float", "active": "bool",
                              "interests": "string[]", "tags": "string[]"}
    props = graph.properties
    assert props["age"].values == [31, None, 40]
    assert props["active"].values == [True, False, True]
    assert props["interests"].values == [["chess", "go"], [], ["poker", "chess|checkers"]]  # \| is escaped
    assert props["name"].values[2] == "Cy, Jr"
    # a-b twice (both directions) -> one edge; c-c self-loop dropped
    assert sorted(zip(graph.src.tolist(), graph.dst.tolist())) == [(0, 1), (0, 2)]
    assert graph.meta["dropped_edges"] == 2


@pytest.mark.parametrize(
    ("nodes", "edges", "match"),
    [
        ("~id,age:Integer\na,1\n", "~from,~to\n", r"nodes.csv: line 1: column 'age:Integer' has unknown type"),
        ("~id,age:Int\na,1\nb,old\n", "~from,~to\n", r"nodes.csv: line 3: column 'age' expects int, got 'old'"),
        ("~id,x:Int\na,1\na,2\n", "~from,~to\n", r"line 3: duplicate ~id 'a' \(first on line 2\)"),
        ("~id\na\n", "~from,~to\na,zed\n", r"edges.csv: line 2: node 'zed' is not in nodes.csv"),
        ("~id\na\n", "~src,~to\n", r"edges.csv: line 1: no ~from column"),
        ("~id,x:Int\na,1,2\n", "~from,~to\n", r"line 2: 3 fields, header has 2"),
        ("~id,name,~label,name\na,A,p,B\n", "~from,~to\n",
         r"nodes.csv: line 1: column 'name' appears twice \(columns 2 and 4\)"),
        ("~id,age:Int,age:String\na,1,x\n", "~from,~to\n", r"nodes.csv: line 1: property 'age' appears twice"),
        ("~id\na\n", "~from,~to,~to\n", r"edges.csv: line 1: column '~to' appears twice"),
        ("~id,name\na,\"Ann\nLee\"\nb,caf\xe9\n", "~from,~to\n",
         r"nodes.csv: line 4: not UTF-8 \(byte 0xe9 at column 6\)"),
        ("", "~from,~to\n", r"nodes.csv: is empty"),
    ],
)
def test_bad_exports_name_file_and_line(tmp_path: Path, nodes: str, edges: str, match: str) -> None:
    (tmp_path / "nodes.csv").write_bytes(nodes.encode("latin-1"))
    with pytest.raises(ConfigError, match=match):
        read_gremlin_csv(tmp_path / "nodes.csv", write(tmp_path / "edges.csv", edges))


def test_write_then_read_round_trips(export: tuple[Path, Path], tmp_path: Path) -> None:
    graph = read_gremlin_csv(*export, separator="|")
    out = tmp_path / "out"
    write_gremlin_csv(graph, out / "nodes.csv", out / "edges.csv", separator=";")
    again = read_gremlin_csv(out / "nodes.csv", out / "edges.csv", separator=";")
    assert again.schema() == graph.schema()
    assert again.properties["interests"].values == graph.properties["interests"].values
    assert again.properties["age"].values == graph.properties["age"].values
    assert np.array_equal(again.src, graph.src) and np.array_equal(again.dst, graph.dst)


def test_cora_planetoid_files() -> None:
    graph = read_planetoid(PROJECT_ROOT / "data" / "graph" / "cora")
    words = graph.properties["words"].values
    assert (graph.num_nodes, graph.num_edges, words.shape) == (2708, 5278, (2708, 1433))
    assert set(np.unique(words)) == {0.0, 1.0}
    assert (graph.src < graph.dst).all()  # one row per undirected pair


def test_missing_planetoid_folder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="task.graph.path|Planetoid file"):
        read_planetoid(tmp_path)


def test_twitch_converter_writes_interests_as_a_multi_valued_property(tmp_path: Path) -> None:
    src = tmp_path / "twitch"
    src.mkdir()
    write(src / "edges.csv", "id_1,id_2\n0,1\n1,2\n2,0\n")
    write(src / "features.csv", "node_id,feature_id,value\n0,7,1.0\n0,3,1.0\n2,7,1.0\n")
    write(src / "target.csv", "id,target\n0,1\n1,0\n2,0\n")
    nodes, edges = convert_twitch(src, tmp_path / "csv")
    assert nodes.read_text().splitlines()[0] == "~id,~label,interests:String[],target:Int"
    graph = read_gremlin_csv(nodes, edges)
    assert graph.properties["interests"].values == [["g3", "g7"], [], ["g7"]]
    assert graph.num_edges == 3


def test_example_graph_is_the_seed_story() -> None:
    graph = read_gremlin_csv(EXAMPLE / "nodes.csv", EXAMPLE / "edges.csv")
    names = graph.display_names("name")
    for person in ("Henry", "Bill", "Terry", "Gary", "Alistair", "Colin", "Sarah"):
        assert person in names
    assert graph.properties["interests"].multi
    assert graph.num_nodes == 32 and graph.num_edges == 68


class _Shell:  # pickles as a call to os.system: what a hostile "dataset" would hold
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def _cora_copy(tmp_path: Path) -> Path:
    import shutil

    folder = tmp_path / "cora"
    shutil.copytree(PROJECT_ROOT / "data" / "graph" / "cora", folder)
    return folder


@pytest.mark.parametrize(
    ("part", "content", "match"),
    [
        ("graph", pickle.dumps(_Shell(), protocol=2), r"ind.cora.graph: is not a readable Planetoid file "
                                                       r"\(UnpicklingError: it names posix.system"),
        ("tx", (PROJECT_ROOT / "data/graph/cora/ind.cora.tx").read_bytes()[:5000], r"ind.cora.tx: is not a readable"),
        ("allx", pickle.dumps([1, 2, 3], protocol=2), r"ind.cora.allx: holds a list, not a 2-D feature matrix"),
        ("graph", pickle.dumps({0: 5}, protocol=2), r"ind.cora.graph: is not a dict of node -> neighbour list"),
        ("test.index", b"1708\nabc\n", r"ind.cora.test.index: line 2: 'abc' is not a node index"),
        ("test.index", b"1708\n", r"ind.cora.test.index: does not fit the features: 1 test indices"),
    ],
)
def test_bad_planetoid_files_are_named(tmp_path: Path, part: str, content: bytes, match: str) -> None:
    folder = _cora_copy(tmp_path)
    (folder / f"ind.cora.{part}").write_bytes(content)
    with pytest.raises(ConfigError, match=match):
        read_planetoid(folder)
