"""Encoders of a heterogeneous graph: typed inputs, then R-GCN (relation-aware) or a homogeneous GNN (type-blind).

The two read the same edges (:mod:`sagelab.tasks.hetero.prepare`: each kept edge type and its reverse), so the only
difference between ``model=rgcn`` and ``model=graphsage`` on a heterogeneous task is whether a layer knows an edge's
relation:

* :class:`TypedInputs` -- each node type's features (its own width, possibly none) plus, for types without
  features, a learnable id embedding (``id_embedding`` > 0) or one learnable vector shared by the type (0), then one
  linear map per type to ``hidden``: every type enters the GNN at the same width;
* R-GCN (Schlichtkrull et al. 2018), :class:`RelGraphConvLayer`: DGL's ``HeteroGraphConv`` of one ``GraphConv``
  (``norm="right"``: the mean over a node's neighbours in that relation, R-GCN's ``1/c_{i,r}``) per relation, each
  with its own weight or a combination of ``num_bases`` shared ones (DGL's ``WeightBasis``), summed over relations,
  plus a self-loop weight and a bias -- the layer of DGL's ``rgcn-hetero`` example. DGL's ``RelGraphConv`` computes
  the same on a flattened graph but multiplies every edge's message by its relation's weight (E x d^2 per layer);
  aggregating first multiplies once per node and relation (on MovieLens ~254k edges but ~12k nodes per layer);
* the homogeneous baseline: the graph family's DGL ``SAGEConv`` / ``GraphConv`` stack over the flattened edges, one
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
        for ntype in self.ntypes:  # keyed "ntype:<label>": a label such as "items" would shadow a ModuleDict method
            width, key = dims[ntype], f"ntype:{ntype}"
            if width == 0:  # nothing describes these nodes: a learnt vector per node, or one for the whole type
                self.ids[key] = nn.Embedding(counts[ntype] if id_embedding else 1, id_embedding or hidden)
                nn.init.normal_(self.ids[key].weight, std=0.1)
                width = id_embedding or hidden
            self.project[key] = nn.Linear(width, hidden)

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(sum of node counts, hidden)``, node types in the order of ``dims`` (the flattened graph's order)."""
        parts = []
        for ntype in self.ntypes:
            feats, key = x[ntype], f"ntype:{ntype}"
            if key in self.ids:
                table = self.ids[key].weight
                feats = table if table.shape[0] == feats.shape[0] else table.expand(feats.shape[0], -1)
            parts.append(self.project[key](feats))
        return torch.cat(parts)


class RelGraphConvLayer(nn.Module):
    """One R-GCN layer on a DGL heterograph: per relation a normalised neighbour mean times its weight, summed, plus
    a self-loop weight and a bias. ``num_bases`` in ``1 .. len(relations) - 1``: basis decomposition."""

    def __init__(self, in_dim: int, out_dim: int, relations: Sequence[str], num_bases: int = 0,
                 bias: bool = True) -> None:
        super().__init__()
        dglnn = import_dgl().nn
        self.relations = list(relations)
        self.conv = dglnn.HeteroGraphConv({
            rel: dglnn.GraphConv(in_dim, out_dim, norm="right", weight=False, bias=False, allow_zero_in_degree=True)
            for rel in self.relations
        }, aggregate="sum")
        self.basis = dglnn.WeightBasis((in_dim, out_dim), num_bases, len(self.relations)) \
            if 0 < num_bases < len(self.relations) else None
        if self.basis is None:
            self.weight = nn.Parameter(torch.empty(len(self.relations), in_dim, out_dim))
            nn.init.xavier_uniform_(self.weight, gain=nn.init.calculate_gain("relu"))
        self.loop_weight = nn.Parameter(torch.empty(in_dim, out_dim))
        nn.init.xavier_uniform_(self.loop_weight, gain=nn.init.calculate_gain("relu"))
        self.bias = nn.Parameter(torch.zeros(out_dim)) if bias else None

    def forward(self, graph: Any, h: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        weight = self.basis() if self.basis is not None else self.weight
        kwargs = {rel: {"weight": weight[i]} for i, rel in enumerate(self.relations)}
        messages = self.conv(graph, h, mod_kwargs=kwargs)
        out = {}
        for ntype, x in h.items():
            value = x @ self.loop_weight
            if ntype in messages:  # a type no relation points at keeps only its self-loop
                value = value + messages[ntype]
            out[ntype] = value + self.bias if self.bias is not None else value
        return out


class HeteroEncoder(nn.Module):
    """Typed inputs + R-GCN or a homogeneous GNN stack; ``out_dim`` sets the last layer's width (class count).

    ``relations``: the message-passing heterograph's relation names (R-GCN's weights, one per relation)."""

    def __init__(
        self,
        dims: dict[str, int],
        counts: dict[str, int],
        relations: Sequence[str],
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
        self.arch, self.counts = arch, [int(counts[t]) for t in dims]
        self.inputs = TypedInputs(dims, counts, hidden, id_embedding)
        self.dropout = nn.Dropout(dropout)
        widths = [hidden] * layers + [out_dim or hidden]
        self.homogeneous: GnnEncoder | None = None
        if arch == "rgcn":
            self.convs = nn.ModuleList(RelGraphConvLayer(d_in, d_out, relations, num_bases, bias)
                                       for d_in, d_out in zip(widths[:-1], widths[1:]))
        else:  # the graph family's encoder, its inputs already hidden-wide and typed
            self.convs = nn.ModuleList()
            self.homogeneous = GnnEncoder(hidden, 0, arch=arch, hidden=hidden, layers=layers, dropout=dropout,
                                          aggregator=aggregator, out_dim=out_dim, bias=bias)

    @property
    def graph_flavour(self) -> str:
        """Which message-passing graph this encoder reads (:meth:`HeteroPrepared.dgl_graph`)."""
        return "hetero" if self.arch == "rgcn" else "flat_loops" if self.arch == "gcn" else "flat"

    def forward(self, graph: Any, x: dict[str, torch.Tensor]) -> torch.Tensor:
        """Every node's vector, node types one after another (the order of ``dims``)."""
        h = self.inputs(x)
        if self.homogeneous is not None:
            return self.homogeneous.encode(graph, h)
        typed = dict(zip(self.inputs.ntypes, torch.split(h, self.counts)))
        for i, conv in enumerate(self.convs):
            typed = conv(graph, {t: self.dropout(v) for t, v in typed.items()})
            if i < len(self.convs) - 1:
                typed = {t: torch.relu(v) for t, v in typed.items()}
        return torch.cat([typed[t] for t in self.inputs.ntypes])


class HeteroLinkPredictor(HeteroEncoder):
    """The encoder + a scorer of (head, tail) pairs of the target edge type, given the two types' offsets."""

    def __init__(self, dims: dict[str, int], counts: dict[str, int], relations: Sequence[str], *,
                 scorer: str = "dot", **kwargs: Any) -> None:
        super().__init__(dims, counts, relations, **kwargs)
        self.scorer = DotScorer() if scorer == "dot" else MLPScorer(int(kwargs["hidden"]), float(kwargs["dropout"]))

    def score(self, h: torch.Tensor, heads: torch.Tensor, tails: torch.Tensor, offsets: Sequence[int]) -> torch.Tensor:
        """Logits of pairs ``(heads[i], tails[i])``, indices within their own types (``offsets`` into ``h``)."""
        return self.scorer(h[heads + offsets[0]], h[tails + offsets[1]])
