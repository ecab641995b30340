"""Encoders of a heterogeneous graph: typed inputs, then R-GCN (relation-aware) or a homogeneous GNN (type-blind).

Both read the flattened message-passing graph of :func:`~sagelab.tasks.hetero.prepare.flat_graph` (node types one
after another, an edge-type id and R-GCN's ``1/|N_r(v)|`` normaliser per edge), so the only difference between
``model=rgcn`` and ``model=graphsage`` on a heterogeneous task is whether a layer knows the relation of an edge:

* :class:`TypedInputs` -- each node type's features (its own width, possibly none) plus, for types without
  features, a learnable id embedding (``id_embedding`` > 0) or one learnable vector shared by the type (0), then one
  linear map per type to ``hidden``: every type enters the GNN at the same width;
* R-GCN (Schlichtkrull et al. 2018): DGL's ``RelGraphConv`` per layer, one weight per relation or ``num_bases``
  shared bases (basis decomposition), a self-loop weight, ReLU between layers;
* the homogeneous baseline: the graph family's DGL ``SAGEConv`` / ``GraphConv`` stack over the same edges, one
  weight for all of them.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from sagelab.tasks.graph.dgl_shim import import_dgl
from sagelab.tasks.graph.nn import DotScorer, GnnEncoder, MLPScorer


class TypedInputs(nn.Module):
    """Per node type: features (+ id embedding or a type vector when featureless) -> a ``hidden``-wide vector."""

    def __init__(self, dims: dict[str, int], counts: dict[str, int], hidden: int, id_embedding: int = 0) -> None:
        super().__init__()
        self.ntypes = list(dims)
        self.ids = nn.ModuleDict()
        self.project = nn.ModuleDict()
        for ntype in self.ntypes:
            width = dims[ntype]
            if width == 0:  # nothing describes these nodes: a learnt vector per node, or one for the whole type
                self.ids[ntype] = nn.Embedding(counts[ntype] if id_embedding else 1, id_embedding or hidden)
                nn.init.normal_(self.ids[ntype].weight, std=0.1)
                width = id_embedding or hidden
            self.project[ntype] = nn.Linear(width, hidden)

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(sum of node counts, hidden)``, node types in the order of ``dims`` (the flattened graph's order)."""
        parts = []
        for ntype in self.ntypes:
            feats = x[ntype]
            if ntype in self.ids:
                table = self.ids[ntype].weight
                feats = table if table.shape[0] == feats.shape[0] else table.expand(feats.shape[0], -1)
            parts.append(self.project[ntype](feats))
        return torch.cat(parts)


class HeteroEncoder(nn.Module):
    """Typed inputs + R-GCN or a homogeneous GNN stack; ``out_dim`` sets the last layer's width (class count)."""

    def __init__(
        self,
        dims: dict[str, int],
        counts: dict[str, int],
        num_rels: int,
        *,
        arch: str,
        hidden: int,
        layers: int,
        dropout: float,
        num_bases: int = 0,
        aggregator: str = "mean",
        id_embedding: int = 0,
        out_dim: int | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__()
        dglnn = import_dgl().nn
        self.arch = arch
        self.inputs = TypedInputs(dims, counts, hidden, id_embedding)
        self.dropout = nn.Dropout(dropout)
        widths = [hidden] * layers + [out_dim or hidden]
        if arch == "rgcn":
            bases = num_bases if 0 < num_bases < num_rels else None
            self.convs = nn.ModuleList(
                dglnn.RelGraphConv(d_in, d_out, num_rels, regularizer="basis" if bases else None, num_bases=bases,
                                   bias=bias, self_loop=True)
                for d_in, d_out in zip(widths[:-1], widths[1:])
            )
            self.homogeneous = None
        else:  # the graph family's encoder, its inputs already hidden-wide and typed
            self.convs = nn.ModuleList()
            self.homogeneous = GnnEncoder(hidden, 0, arch=arch, hidden=hidden, layers=layers, dropout=dropout,
                                          aggregator=aggregator, out_dim=out_dim, bias=bias)

    @property
    def needs_self_loops(self) -> bool:
        return self.arch == "gcn"

    def forward(self, graph: Any, x: dict[str, torch.Tensor]) -> torch.Tensor:
        """Every node's vector in the flattened graph's order."""
        h = self.inputs(x)
        if self.homogeneous is not None:
            return self.homogeneous.encode(graph, h)
        etypes, norm = graph.edata["etype"], graph.edata["norm"]
        for i, conv in enumerate(self.convs):
            h = conv(graph, self.dropout(h), etypes, norm, presorted=True)  # flat_graph sorts by relation
            if i < len(self.convs) - 1:
                h = torch.relu(h)
        return h


class HeteroLinkPredictor(HeteroEncoder):
    """The encoder + a scorer of (head, tail) pairs of the target edge type, given the two types' offsets."""

    def __init__(self, dims: dict[str, int], counts: dict[str, int], num_rels: int, *, scorer: str = "dot",
                 **kwargs: Any) -> None:
        super().__init__(dims, counts, num_rels, **kwargs)
        self.scorer = DotScorer() if scorer == "dot" else MLPScorer(int(kwargs["hidden"]), float(kwargs["dropout"]))

    def score(self, h: torch.Tensor, heads: torch.Tensor, tails: torch.Tensor, offsets: Sequence[int]) -> torch.Tensor:
        """Logits of pairs ``(heads[i], tails[i])``, indices within their own types (``offsets`` into ``h``)."""
        return self.scorer(h[heads + offsets[0]], h[tails + offsets[1]])
