"""GNN encoders (GraphSAGE, GCN) and edge scorers built from DGL layers.

:class:`GnnEncoder` = optional learnable node-id embedding + a stack of DGL convolutions, shared by link
prediction and node classification; :class:`LinkPredictor` = that encoder + a scorer. The same module runs
on the whole graph (``forward(graph, x)``) or on the sampled blocks of DGL's neighbour sampler
(``forward(blocks, x)``): each layer gets the whole graph or its own block. Scores are logits; ``sigmoid``
gives link probabilities.

GCN on sampled blocks normalises by each block's own degrees (DGL's GraphConv semantics), so its
mini-batch training sees slightly different weights than full-graph inference; GraphSAGE's mean is
exact on blocks that keep all neighbours.

Nodes unknown at training time (``mode=transform``) have no trained id embedding; they get the
mean of the trained ones, so featureless newcomers are described by their neighbourhood alone.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from sagelab.tasks.graph import ARCHS
from sagelab.tasks.graph.dgl_shim import import_dgl


class DotScorer(nn.Module):
    """score(u, v) = <h_u, h_v>."""

    def forward(self, h_src: torch.Tensor, h_dst: torch.Tensor) -> torch.Tensor:
        return (h_src * h_dst).sum(-1)

    def against_all(self, h: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """(queries x nodes) scores: one matrix product instead of gathering every pair."""
        return h[queries] @ h.T


class MLPScorer(nn.Module):
    """score(u, v) = MLP(h_u * h_v): symmetric in u and v, like a friendship."""

    def __init__(self, dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim, 1))

    def forward(self, h_src: torch.Tensor, h_dst: torch.Tensor) -> torch.Tensor:
        return self.net(h_src * h_dst).squeeze(-1)

    def against_all(self, h: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """(queries x nodes) scores, pair by pair."""
        num = h.shape[0]
        return self(h[queries.repeat_interleave(num)], h.repeat(len(queries), 1)).view(len(queries), num)


class GnnEncoder(nn.Module):
    """Optional node-id embedding + a stack of DGL convolutions: node features in, node vectors out.

    ``out_dim`` sets the last layer's width (node classification: the class count, as in the GCN paper's
    2-layer model); by default every layer is ``hidden`` wide (link prediction scores those vectors). ``bias=False``
    drops the layers' additive bias (the GCN paper's propagation rule has none). Dropout
    precedes every layer, input features included, and ReLU follows all but the last.
    """

    def __init__(
        self,
        in_dim: int,
        num_nodes: int,
        arch: str = "graphsage",
        hidden: int = 128,
        layers: int = 2,
        dropout: float = 0.5,
        aggregator: str = "mean",
        id_embedding: int = 0,
        out_dim: int | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__()
        dglnn = import_dgl().nn
        if arch not in ARCHS:
            raise ValueError(f"unknown arch {arch!r}; allowed: {', '.join(ARCHS)}")
        if in_dim + id_embedding == 0:
            raise ValueError("nodes have no features and id_embedding is 0: there is nothing to encode")
        self.arch = arch
        self.in_dim = in_dim  # width of the encoded node features (id embeddings excluded)
        self.id_embedding = nn.Embedding(num_nodes, id_embedding) if id_embedding else None
        if self.id_embedding is not None:
            nn.init.normal_(self.id_embedding.weight, std=0.1)
        dims = [in_dim + id_embedding] + [hidden] * layers
        if out_dim is not None:
            dims[-1] = out_dim
        convs = []
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            if arch == "graphsage":
                convs.append(dglnn.SAGEConv(d_in, d_out, aggregator_type=aggregator, bias=bias))
            else:  # GCN: symmetric normalisation; the graph carries self-loops (see message_passing_graph)
                convs.append(dglnn.GraphConv(d_in, d_out, norm="both", bias=bias, allow_zero_in_degree=True))
        self.convs = nn.ModuleList(convs)
        self.dropout = nn.Dropout(dropout)

    @property
    def needs_self_loops(self) -> bool:
        return self.arch == "gcn"

    def node_inputs(self, x: torch.Tensor, node_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Features of the given nodes (all by default) with their id embeddings appended.

        ``node_ids`` >= the trained node count (new nodes) get the mean id embedding.
        """
        if self.id_embedding is None:
            return x
        table = self.id_embedding.weight
        if node_ids is None:
            node_ids = torch.arange(x.shape[0], device=x.device)
        known = node_ids < table.shape[0]
        emb = table.mean(0, keepdim=True).expand(node_ids.shape[0], -1)
        if known.all():
            emb = table[node_ids]
        elif known.any():
            emb = emb.clone()
            emb[known] = table[node_ids[known]]
        return torch.cat([x, emb], dim=1)

    def encode(self, graph_or_blocks: Any, h: torch.Tensor) -> torch.Tensor:
        """Node embeddings; ``graph_or_blocks`` is a DGLGraph or a list of blocks, one per layer."""
        blocks: Sequence[Any] = graph_or_blocks if isinstance(graph_or_blocks, (list, tuple)) else [graph_or_blocks] * len(self.convs)
        for i, (conv, block) in enumerate(zip(self.convs, blocks)):
            h = conv(block, self.dropout(h))
            if i < len(self.convs) - 1:
                h = torch.relu(h)
        return h

    def forward(self, graph_or_blocks: Any, x: torch.Tensor, node_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.encode(graph_or_blocks, self.node_inputs(x, node_ids))


class LinkPredictor(GnnEncoder):
    """Node encoder + edge scorer for link prediction (parameter names and init order as before the
    encoder was factored out, so earlier checkpoints load and seeds give the same weights)."""

    def __init__(
        self,
        in_dim: int,
        num_nodes: int,
        arch: str = "graphsage",
        hidden: int = 128,
        layers: int = 2,
        dropout: float = 0.5,
        aggregator: str = "mean",
        scorer: str = "dot",
        id_embedding: int = 0,
        bias: bool = True,
    ) -> None:
        super().__init__(in_dim, num_nodes, arch=arch, hidden=hidden, layers=layers, dropout=dropout,
                         aggregator=aggregator, id_embedding=id_embedding, bias=bias)
        self.scorer = DotScorer() if scorer == "dot" else MLPScorer(hidden, dropout)

    def score(self, h: torch.Tensor, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        return self.scorer(h[src], h[dst])

    def score_against_all(self, h: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """Row ``i``: the score of ``queries[i]`` with every node."""
        return self.scorer.against_all(h, queries)
