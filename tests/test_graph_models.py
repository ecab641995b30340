"""GNN encoders and training steps on tiny graphs: sampled blocks match the full graph, training learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sagelab.tasks.graph.nn import LinkPredictor
from sagelab.tasks.graph.split import sample_eval_negatives, split_edges
from sagelab.tasks.graph.training import (
    EdgeBatchCollator,
    edge_sampler,
    embed,
    evaluate_edges,
    full_graph_loss,
    message_passing_graph,
    minibatch_loss,
    reverse_edge_ids,
)

torch.set_num_threads(1)


def two_communities(n: int = 40, seed: int = 0) -> tuple[np.ndarray, torch.Tensor]:
    """Two dense halves with one bridge; features say which half (plus noise)."""
    rng = np.random.default_rng(seed)
    half = n // 2
    edges = [(u, v) for u in range(n) for v in range(u + 1, n) if (u < half) == (v < half) and rng.random() < 0.3]
    edges.append((0, n - 1))
    x = torch.tensor(np.stack([np.arange(n) < half, np.arange(n) >= half], 1) + rng.normal(0, 0.3, (n, 2)), dtype=torch.float32)
    return np.array(edges), x


def test_sampled_blocks_with_all_neighbours_equal_the_full_graph() -> None:
    # (GraphSAGE only: GCN's symmetric norm uses each block's own degrees, as DGL defines it)
    edges, x = two_communities()
    model = LinkPredictor(2, len(x), arch="graphsage", hidden=8, layers=2, dropout=0.0).eval()
    loops = model.needs_self_loops
    graph = message_passing_graph(edges, len(x), loops)
    sampler = edge_sampler([-1, -1], 1, reverse_edge_ids(len(edges), len(x), loops))
    sampler.exclude = None  # compare like with like: no exclusion on this check
    input_nodes, pair, _, blocks = EdgeBatchCollator(graph, sampler)(torch.arange(10))
    h_blocks = model(blocks, x[input_nodes], input_nodes)
    h_full = model(graph, x)
    assert torch.allclose(h_blocks, h_full[pair.ndata["_ID"]], atol=1e-5)


def test_minibatch_blocks_exclude_the_batch_edges_both_ways() -> None:
    edges, x = two_communities()
    graph = message_passing_graph(edges, len(x))
    sampler = edge_sampler([-1], 2, reverse_edge_ids(len(edges), len(x)))
    seeds = torch.arange(6)
    input_nodes, pair, neg, blocks = EdgeBatchCollator(graph, sampler)(seeds)
    used = set(blocks[0].edata["_ID"].tolist())
    assert not used & set(seeds.tolist()) and not used & set((seeds + len(edges)).tolist())
    assert neg.num_edges() == 2 * pair.num_edges()


@pytest.mark.parametrize(("arch", "sampling"), [("graphsage", "full"), ("gcn", "full"), ("graphsage", "neighbor")])
def test_training_learns_held_out_links(arch: str, sampling: str) -> None:
    edges, x = two_communities(seed=1)
    split = split_edges(edges[:, 0], edges[:, 1], len(x), val=0.0, test=0.15, seed=0)
    negs = torch.as_tensor(sample_eval_negatives(split.test, edges, len(x), 10, seed=1))
    torch.manual_seed(0)
    model = LinkPredictor(2, len(x), arch=arch, hidden=16, layers=2, dropout=0.0)
    graph = message_passing_graph(split.train, len(x), model.needs_self_loops)
    test = torch.as_tensor(split.test)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    collate = EdgeBatchCollator(graph, edge_sampler([5, 5], 1, reverse_edge_ids(len(split.train), len(x), model.needs_self_loops)))
    for step in range(40):
        opt.zero_grad()
        if sampling == "full":
            loss = full_graph_loss(model, graph, x, torch.as_tensor(split.train), num_negs=2)
        else:
            batch = collate(torch.randperm(len(split.train))[:64])
            loss = minibatch_loss(model, batch, x[batch[0]])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    after = evaluate_edges(model, embed(model, graph, x), test, negs)
    # held-out links lie within a community; an oracle "same community?" scorer gets AUC 0.82 here
    assert after["auc"] > 0.78
    assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:5])


def test_new_nodes_get_the_mean_id_embedding() -> None:
    model = LinkPredictor(0, 5, hidden=4, layers=1, id_embedding=3)
    table = model.id_embedding.weight
    out = model.node_inputs(torch.zeros(3, 0), torch.tensor([1, 7, 4]))
    assert torch.equal(out[0], table[1]) and torch.equal(out[2], table[4])
    assert torch.allclose(out[1], table.mean(0))
    with pytest.raises(ValueError, match="nothing to encode"):
        LinkPredictor(0, 5, id_embedding=0)


@pytest.mark.parametrize("scorer", ["dot", "mlp"])
def test_recommending_for_many_nodes_equals_scoring_each_pair(scorer: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from sagelab.tasks.graph import recommend as rec

    edges, _ = two_communities()
    n = int(edges.max()) + 1
    torch.manual_seed(0)
    model = LinkPredictor(2, n, hidden=8, scorer=scorer).eval()
    h = torch.randn(n, 8)
    ids = [f"n{i}" for i in range(n)]
    monkeypatch.setattr(rec, "PAIRS_PER_CHUNK", 3 * n)  # several chunks of three queries
    queries = list(range(n))
    answers = rec.recommend_many(model, h, queries, 5, edges, ids, ids)
    for node, answer in zip(queries, answers):
        others = torch.arange(n)
        with torch.no_grad():
            logits = model.score(h, torch.full_like(others, node), others)
        linked = {int(v) for u, v in edges if u == node} | {int(u) for u, v in edges if v == node} | {node}
        expected = sorted((i for i in range(n) if i not in linked), key=lambda i: -float(logits[i]))[:5]
        assert [a["id"] for a in answer] == [ids[i] for i in expected]
        assert [a["score"] for a in answer] == pytest.approx([float(torch.sigmoid(logits[i])) for i in expected], abs=1e-5)
    # a node linked to all but two others gets those two, not k answers padded with its neighbours
    hub = np.array([(0, j) for j in range(1, n - 2)])
    assert sorted(a["id"] for a in rec.recommend(model, h, 0, 5, hub, ids, ids)) == [ids[n - 2], ids[n - 1]]
