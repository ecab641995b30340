"""Link-prediction metrics: ROC AUC, MRR and Hits@K of positives against their sampled negatives.

Every held-out positive edge ``(u, v)`` comes with ``K`` negatives ``(u, w)``. ROC AUC pools all
positive and negative scores (torchmetrics' ``binary_auroc``). MRR and Hits@K rank each positive
among its own ``K + 1`` candidates. They are computed here, vectorised, rather than with
torchmetrics' ``RetrievalMRR``/``RetrievalHitRate``: those treat any score <= 0 as "not retrieved"
(wrong for logits), break ties in arbitrary order and loop over queries in Python. Ties here count
half (the expected rank under random tie-breaking), so a model that scores everything equal gets
the chance-level MRR, not a perfect one. ``tests/test_graph_metrics.py`` checks both against
torchmetrics on tie-free positive scores.
"""

from __future__ import annotations

from typing import Iterable

import torch


def positive_ranks(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """1-based rank of ``pos[i]`` among ``{pos[i]} ∪ neg[i]``, ties counted as half a place."""
    if neg.dim() != 2 or neg.shape[0] != pos.shape[0]:
        raise ValueError(f"neg must be (num_pos, num_negs), got {tuple(neg.shape)} for {pos.shape[0]} positives")
    pos = pos.reshape(-1, 1)
    return 1.0 + (neg > pos).sum(1).double() + 0.5 * (neg == pos).sum(1).double()


def link_metrics(pos: torch.Tensor, neg: torch.Tensor, hits_at: Iterable[int] = (20,)) -> dict[str, float]:
    """``{"auc", "mrr", "hits_at_K"...}`` (MLflow keys allow no ``@``) for positive scores ``(P,)`` and negative scores ``(P, K)``."""
    from torchmetrics.functional.classification import binary_auroc

    pos, neg = pos.detach().float().cpu(), neg.detach().float().cpu()
    scores = torch.cat([pos, neg.reshape(-1)])
    labels = torch.cat([torch.ones_like(pos), torch.zeros(neg.numel())]).long()
    ranks = positive_ranks(pos, neg)
    out = {"auc": float(binary_auroc(scores, labels)), "mrr": float((1.0 / ranks).mean())}
    for k in hits_at:
        out[f"hits_at_{k}"] = float((ranks <= k).double().mean())
    return out
