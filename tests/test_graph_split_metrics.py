"""Edge split without leakage, evaluation negatives, and the ranking metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sagelab.config import ConfigError
from sagelab.tasks.graph.metrics import link_metrics, positive_ranks
from sagelab.tasks.graph.split import edge_keys, sample_eval_negatives, split_edges
from sagelab.tasks.graph.training import message_passing_graph, reverse_edge_ids


def ring(n: int) -> tuple[np.ndarray, np.ndarray]:
    src = np.arange(n)
    return src, (src + 1) % n


def test_split_is_a_seeded_partition() -> None:
    src, dst = ring(200)
    split = split_edges(src, dst, 200, val=0.1, test=0.2, seed=3)
    assert split.sizes() == {"train": 140, "val": 20, "test": 40}
    keys = [set(edge_keys(part, 200).tolist()) for part in (split.train, split.val, split.test)]
    assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])
    assert set().union(*keys) == set(edge_keys(np.stack([src, dst], 1), 200).tolist())
    again = split_edges(src, dst, 200, val=0.1, test=0.2, seed=3)
    assert np.array_equal(again.test, split.test)
    assert not np.array_equal(split_edges(src, dst, 200, 0.1, 0.2, seed=4).test, split.test)


def test_held_out_edges_are_not_in_the_message_passing_graph() -> None:
    src, dst = ring(60)
    split = split_edges(src, dst, 60, val=0.1, test=0.1, seed=0)
    graph = message_passing_graph(split.train, 60)
    for u, v in np.concatenate([split.val, split.test]):
        assert not graph.has_edges_between(int(u), int(v)) and not graph.has_edges_between(int(v), int(u))
    for u, v in split.train:
        assert graph.has_edges_between(int(u), int(v)) and graph.has_edges_between(int(v), int(u))


def test_reverse_edge_ids_point_at_the_reverse_edge() -> None:
    edges = np.array([[0, 1], [1, 2], [0, 3]])
    graph = message_passing_graph(edges, 4, self_loops=True)
    rev = reverse_edge_ids(3, 4, self_loops=True)
    src, dst = graph.edges()
    assert graph.num_edges() == 3 * 2 + 4
    assert torch.equal(src[rev], dst) and torch.equal(dst[rev], src)


@pytest.mark.parametrize(("val", "test"), [(0.6, 0.5), (-0.1, 0.1), (0.001, 0.0)])
def test_impossible_splits_are_config_errors(val: float, test: float) -> None:
    src, dst = ring(50)
    with pytest.raises(ConfigError, match="task.split"):
        split_edges(src, dst, 50, val=val, test=test, seed=0)


def test_eval_negatives_are_never_real_edges_or_self_pairs() -> None:
    src, dst = ring(12)
    edges = np.stack([src, dst], 1)
    neg = sample_eval_negatives(edges[:5], edges, 12, num_negs=30, seed=0)
    assert neg.shape == (5, 30)
    known = set(edge_keys(edges, 12).tolist())
    for row, (u, _) in enumerate(edges[:5]):
        for w in neg[row]:
            assert w != u and edge_keys(np.array([[u, w]]), 12)[0] not in known


def test_metrics_of_perfect_random_and_tied_scorers() -> None:
    pos = torch.full((50,), 5.0)
    neg = torch.randn(50, 20)
    perfect = link_metrics(pos, neg, hits_at=(1, 10))
    assert perfect == pytest.approx({"auc": 1.0, "mrr": 1.0, "hits_at_1": 1.0, "hits_at_10": 1.0})
    tied = link_metrics(torch.zeros(50), torch.zeros(50, 20), hits_at=(10,))
    assert tied["auc"] == pytest.approx(0.5)
    assert tied["mrr"] == pytest.approx(1 / 11)  # rank 1 + 20/2: ties never look like wins
    assert tied["hits_at_10"] == 0.0
    assert positive_ranks(torch.tensor([1.0]), torch.tensor([[2.0, 0.0, 1.0]])).item() == 2.5


def test_rank_metrics_agree_with_torchmetrics() -> None:
    from torchmetrics.retrieval import RetrievalHitRate, RetrievalMRR

    gen = torch.Generator().manual_seed(0)
    pos = torch.rand(40, generator=gen) + 0.5  # positive, tie-free: where torchmetrics is exact
    neg = torch.rand(40, 25, generator=gen)
    preds = torch.cat([pos[:, None], neg], 1)
    target = torch.zeros_like(preds, dtype=torch.bool)
    target[:, 0] = True
    indexes = torch.arange(40)[:, None].expand_as(preds)
    ours = link_metrics(pos, neg, hits_at=(5,))
    args = (preds.flatten(), target.flatten())
    assert ours["mrr"] == pytest.approx(float(RetrievalMRR()(*args, indexes=indexes.flatten())), abs=1e-6)
    assert ours["hits_at_5"] == pytest.approx(float(RetrievalHitRate(top_k=5)(*args, indexes=indexes.flatten())), abs=1e-6)
