"""Train/validation/test edge split without leakage, and fixed negatives for evaluation.

Held-out edges are removed from the message-passing graph: the encoder only ever aggregates over
training edges, so a validation or test edge cannot be "seen" through a neighbour. Evaluation
negatives are drawn once per split (seeded) by corrupting the tail of each positive edge with a
uniformly random node, filtered so that no negative is a real edge of the whole graph or a
self-pair; every positive ``(u, v)`` is then ranked against its own ``num_negs`` negatives for MRR
and Hits@K, and all pairs feed ROC AUC.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sagelab.config import ConfigError


@dataclass
class EdgeSplit:
    """Undirected edges (one ``(src, dst)`` row per pair) for each split."""

    num_nodes: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def split_edges(src: np.ndarray, dst: np.ndarray, num_nodes: int, val: float, test: float, seed: int) -> EdgeSplit:
    """Shuffle the undirected edges with ``seed`` and cut off ``val`` and ``test`` fractions."""
    for key, frac in (("task.split.val", val), ("task.split.test", test)):
        if not 0 <= frac < 1:
            raise ConfigError(key, f"must be a fraction in [0, 1), got {frac}.")
    if val + test >= 1:
        raise ConfigError("task.split", f"val + test = {val + test} leaves no training edges.")
    edges = np.stack([np.asarray(src, np.int64), np.asarray(dst, np.int64)], axis=1)
    order = np.random.default_rng(seed).permutation(len(edges))
    n_val, n_test = int(round(val * len(edges))), int(round(test * len(edges)))
    if (val > 0 and n_val == 0) or (test > 0 and n_test == 0) or n_val + n_test >= len(edges):
        raise ConfigError("task.split", f"{len(edges)} edges are too few for val={val}, test={test}.")
    return EdgeSplit(
        num_nodes=num_nodes,
        val=edges[order[:n_val]],
        test=edges[order[n_val : n_val + n_test]],
        train=edges[order[n_val + n_test :]],
    )


def edge_keys(edges: np.ndarray, num_nodes: int) -> np.ndarray:
    """A sortable int64 key per unordered pair, for fast membership tests."""
    lo, hi = np.minimum(edges[:, 0], edges[:, 1]), np.maximum(edges[:, 0], edges[:, 1])
    return lo.astype(np.int64) * num_nodes + hi


def sample_eval_negatives(
    positives: np.ndarray, all_edges: np.ndarray, num_nodes: int, num_negs: int, seed: int,
    num_tails: int | None = None,
) -> np.ndarray:
    """``(len(positives), num_negs)`` tail nodes ``w`` such that ``(u, w)`` is not an edge and ``w != u``.

    ``num_tails`` (a typed relation, :mod:`sagelab.tasks.hetero`): edges are directed from ``num_nodes`` heads to
    ``num_tails`` tails of another index space, so pairs are keyed by direction, tails are drawn from the tails'
    nodes and ``w == u`` is no self-pair (the two indices name different nodes)."""
    rng = np.random.default_rng(seed)
    tails_count = num_nodes if num_tails is None else num_tails

    def keys(pairs: np.ndarray) -> np.ndarray:
        if num_tails is None:
            return edge_keys(pairs, num_nodes)
        return pairs[:, 0].astype(np.int64) * num_tails + pairs[:, 1]

    known = np.sort(keys(all_edges))
    heads = np.repeat(positives[:, 0], num_negs)
    tails = rng.integers(0, tails_count, size=heads.shape[0])
    for _ in range(100):
        pair_keys = keys(np.stack([heads, tails], axis=1))
        pos = np.searchsorted(known, pair_keys)
        hit = (pos < len(known)) & (known[np.minimum(pos, len(known) - 1)] == pair_keys)
        bad = hit | (tails == heads) if num_tails is None else hit
        if not bad.any():
            break
        tails[bad] = rng.integers(0, tails_count, size=int(bad.sum()))
    return tails.reshape(len(positives), num_negs)
