"""Training and evaluation steps for link prediction, full-graph and neighbour-sampled.

The message-passing graph holds each training edge in both directions: edge ``i`` (``u -> v``) and
its reverse ``i + E`` (``v -> u``), then, for GCN, one self-loop per node. Positive training
targets are the first ``E`` ids. Negatives are uniform: each positive ``(u, v)`` gets ``num_negs``
pairs ``(u, w)`` with ``w`` drawn uniformly from all nodes (DGL's ``Uniform`` sampler does the same
in the mini-batch path). The loss is binary cross-entropy on logits.

In a mini-batch, the sampled blocks exclude the batch's own target edges and their reverses
(``exclude="reverse_id"``): the model cannot read the answer off the graph it aggregates over.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from sagelab.tasks.graph.dgl_shim import import_dgl, one_thread
from sagelab.tasks.graph.metrics import link_metrics
from sagelab.tasks.graph.nn import LinkPredictor


def message_passing_graph(edges: np.ndarray, num_nodes: int, self_loops: bool = False) -> Any:
    """A DGLGraph with every undirected edge in both directions (``[fwd..., rev...]``) (+ self-loops)."""
    dgl = import_dgl()
    src, dst = torch.as_tensor(edges[:, 0], dtype=torch.int64), torch.as_tensor(edges[:, 1], dtype=torch.int64)
    all_src, all_dst = torch.cat([src, dst]), torch.cat([dst, src])
    if self_loops:
        loop = torch.arange(num_nodes)
        all_src, all_dst = torch.cat([all_src, loop]), torch.cat([all_dst, loop])
    return dgl.graph((all_src, all_dst), num_nodes=num_nodes)


def reverse_edge_ids(num_edges: int, num_nodes: int, self_loops: bool = False) -> torch.Tensor:
    """For :func:`message_passing_graph`: the id of each edge's reverse (a self-loop is its own)."""
    fwd = torch.arange(num_edges)
    rev = torch.cat([fwd + num_edges, fwd])
    if self_loops:
        rev = torch.cat([rev, torch.arange(2 * num_edges, 2 * num_edges + num_nodes)])
    return rev


def bce_loss(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    scores = torch.cat([pos, neg])
    labels = torch.cat([torch.ones_like(pos), torch.zeros_like(neg)])
    return F.binary_cross_entropy_with_logits(scores, labels)


def full_graph_loss(model: LinkPredictor, graph: Any, x: torch.Tensor, train_edges: torch.Tensor, num_negs: int) -> torch.Tensor:
    """One full-graph step's loss: encode all nodes, score all training edges and their negatives."""
    h = model(graph, x)
    src, dst = train_edges[:, 0], train_edges[:, 1]
    neg_src = src.repeat_interleave(num_negs)
    neg_dst = torch.randint(0, x.shape[0], (neg_src.shape[0],), device=x.device)
    return bce_loss(model.score(h, src, dst), model.score(h, neg_src, neg_dst))


def edge_sampler(fanouts: Iterable[int], num_negs: int, reverse_eids: torch.Tensor) -> Any:
    """DGL's edge-prediction sampler: neighbour blocks for the batch's ends plus uniform negatives."""
    dgl = import_dgl()
    return dgl.dataloading.as_edge_prediction_sampler(
        dgl.dataloading.NeighborSampler(list(fanouts)),
        exclude="reverse_id",
        reverse_eids=reverse_eids,
        negative_sampler=dgl.dataloading.negative_sampler.Uniform(num_negs),
    )


class EdgeBatchCollator:
    """``collate_fn`` for a plain torch DataLoader over training-edge ids -> a sampled mini-batch.

    Sampling in ``collate_fn`` (instead of DGL's own DataLoader) keeps the loader an ordinary
    ``torch.utils.data.DataLoader``, which Lightning can re-create with a distributed sampler.

    Each batch is sampled on one thread (:func:`seed_sampling`).
    """

    def __init__(self, graph: Any, sampler: Any) -> None:
        self.graph, self.sampler = graph, sampler

    def __call__(self, eids: list[int] | torch.Tensor) -> tuple[Any, ...]:
        with one_thread():
            return self.sampler.sample(self.graph, torch.as_tensor(eids, dtype=torch.int64))


def seed_sampling(seed: int) -> None:
    """Seed DGL's neighbour sampler, which draws from DGL's own generators (``seed_everything`` leaves them alone).

    DGL keeps a generator per OpenMP thread, seeded with ``(seed, stream)`` where the stream depends on the order
    threads first seeded; sampled on two threads, the same seed drew other neighbours from run to run. Seeded and
    sampled on one thread (:class:`EdgeBatchCollator`), whose stream was fixed when it imported DGL
    (:func:`~sagelab.tasks.graph.dgl_shim.import_dgl`), the same seed draws the same batches.
    """
    with one_thread():
        import_dgl().seed(seed)


def minibatch_loss(model: LinkPredictor, batch: tuple[Any, ...], inputs: torch.Tensor) -> torch.Tensor:
    """Loss of one ``(input_nodes, pair_graph, neg_pair_graph, blocks)`` batch from :func:`edge_sampler`;
    ``inputs`` are the input nodes' features (``x[input_nodes]``)."""
    input_nodes, pair_graph, neg_graph, blocks = batch
    h = model(blocks, inputs, input_nodes)
    pos_src, pos_dst = pair_graph.edges()
    neg_src, neg_dst = neg_graph.edges()
    return bce_loss(model.score(h, pos_src, pos_dst), model.score(h, neg_src, neg_dst))


@contextmanager
def evaluating(model: LinkPredictor) -> Iterator[LinkPredictor]:
    """``model`` in eval mode (no dropout) without gradients; its training mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def embed(model: LinkPredictor, graph: Any, x: torch.Tensor) -> torch.Tensor:
    """Full-neighbourhood embeddings of every node (eval mode, no dropout)."""
    with evaluating(model):
        return model(graph, x)


def score_edges(model: LinkPredictor, h: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Logits of the edges ``(E, 2)`` given embeddings ``h`` (eval mode); ``sigmoid`` gives probabilities."""
    with evaluating(model):
        return model.score(h, edges[:, 0], edges[:, 1])


def evaluate_edges(
    model: LinkPredictor, h: torch.Tensor, positives: torch.Tensor, neg_tails: torch.Tensor, hits_at: Iterable[int] = (20,)
) -> dict[str, float]:
    """Metrics of positive edges ``(P, 2)`` against tail negatives ``(P, K)`` given embeddings ``h``."""
    with evaluating(model):
        src = positives[:, 0]
        pos = model.score(h, src, positives[:, 1])
        k = neg_tails.shape[1]
        neg = model.score(h, src.repeat_interleave(k), neg_tails.reshape(-1)).reshape(-1, k)
    return link_metrics(pos, neg, hits_at)
