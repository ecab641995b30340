"""Answer "top k new friends for Henry" and embed an updated graph without retraining.

:func:`recommend` scores one node against every other with the trained scorer and returns the
``k`` best that are not already its neighbours (nor itself), with link probabilities.

:func:`transform` is Neptune ML's "model transform": an updated export (new users, new
friendships, same schema) is encoded with the *fitted* feature encoding (category values never seen
in training fall into OTHER), the trained encoder runs over the whole updated graph, and every node
-- old or new -- gets a fresh embedding. Nothing is trained.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from sagelab.config import ConfigError
from sagelab.tasks.graph.features import FeatureEncoder
from sagelab.tasks.graph.nn import LinkPredictor
from sagelab.tasks.graph.property_graph import PropertyGraph
from sagelab.tasks.graph.training import embed, message_passing_graph


def find_node(query: str, node_ids: Sequence[str], names: Sequence[str], key: str = "task.node") -> int:
    """Index of the node whose id (first) or display name equals ``query``; unknown/ambiguous -> ConfigError."""
    query = str(query)
    for i, node_id in enumerate(node_ids):
        if node_id == query:
            return i
    matches = [i for i, name in enumerate(names) if name == query]
    if len(matches) == 1:
        return matches[0]
    if matches:
        ids = ", ".join(node_ids[i] for i in matches[:10])
        raise ConfigError(key, f"the name {query!r} belongs to {len(matches)} nodes ({ids}); give an id instead.")
    close = difflib.get_close_matches(query, list(dict.fromkeys(names)), n=3, cutoff=0.7)
    hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
    raise ConfigError(key, f"{query!r} is neither a node id nor a node name in this graph ({len(node_ids)} nodes).{hint}")


#: pairs scored at once when answering many nodes: bounds the (pairs x hidden) tensors an MLP scorer builds
PAIRS_PER_CHUNK = 1 << 18


def adjacency(edges: np.ndarray, num_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR of the undirected ``edges``: node ``i``'s neighbours are ``indices[indptr[i]:indptr[i + 1]]``."""
    from scipy.sparse import csr_matrix  # loaded with DGL already

    both = np.concatenate([edges, edges[:, ::-1]])
    csr = csr_matrix((np.ones(len(both), bool), (both[:, 0], both[:, 1])), shape=(num_nodes, num_nodes))
    return csr.indptr, csr.indices


@torch.no_grad()
def recommend(
    model: LinkPredictor,
    h: torch.Tensor,
    node: int,
    k: int,
    edges: np.ndarray,
    node_ids: Sequence[str],
    names: Sequence[str],
) -> list[dict[str, Any]]:
    """The ``k`` highest-scoring non-neighbours of ``node`` as ``{id, name, score}`` (score = probability)."""
    return recommend_many(model, h, [node], k, edges, node_ids, names)[0]


@torch.no_grad()
def recommend_many(
    model: LinkPredictor,
    h: torch.Tensor,
    nodes: Sequence[int],
    k: int,
    edges: np.ndarray,
    node_ids: Sequence[str],
    names: Sequence[str],
) -> list[list[dict[str, Any]]]:
    """:func:`recommend` for each of ``nodes``, scored a chunk of nodes against every node at a time (a transform
    answers for every new node: one at a time, scoring and neighbour lookup were most of its work)."""
    model.eval()
    num = h.shape[0]
    indptr, indices = adjacency(edges, num)
    chunk = max(1, PAIRS_PER_CHUNK // max(num, 1))
    answers: list[list[dict[str, Any]]] = []
    for start in range(0, len(nodes), chunk):
        queries = torch.as_tensor(list(nodes[start : start + chunk]), dtype=torch.long)
        scores = model.score_against_all(h, queries)
        for row, node in enumerate(queries.tolist()):
            scores[row, torch.from_numpy(indices[indptr[node] : indptr[node + 1]])] = float("-inf")
            scores[row, node] = float("-inf")
        top = torch.topk(scores, min(k, num), dim=1)
        for logits, picks in zip(top.values, top.indices.tolist()):
            kept = torch.isfinite(logits)  # fewer than k non-neighbours: the excluded come last, at -inf
            answers.append([{"id": node_ids[i], "name": names[i], "score": p}
                            for p, i in zip(torch.sigmoid(logits[kept]).tolist(), picks)])
    return answers


@dataclass
class Transformed:
    """Embeddings of every node of an updated graph; ``new_nodes`` are indices unseen in training."""

    graph: PropertyGraph
    embeddings: torch.Tensor
    new_nodes: list[int]
    edges: np.ndarray


def transform(
    model: LinkPredictor,
    encoder: FeatureEncoder,
    trained_ids: Sequence[str],
    updated: PropertyGraph,
    self_loops: bool,
) -> Transformed:
    """Encode ``updated`` with the fitted encoding and the trained weights; no parameter changes."""
    x = torch.from_numpy(encoder.transform(updated))  # raises a ConfigError on a schema mismatch
    if x.shape[1] != model.in_dim:
        raise ConfigError(updated.source, f"encodes to {x.shape[1]} features; the model expects {model.in_dim}.")
    trained = {node_id: i for i, node_id in enumerate(trained_ids)}
    # id embeddings are looked up by training index; a new node gets an index past the table (-> mean)
    fresh = iter(range(len(trained_ids), len(trained_ids) + updated.num_nodes))
    index = torch.tensor([trained[n] if n in trained else next(fresh) for n in updated.node_ids])
    edges = np.stack([updated.src, updated.dst], axis=1)
    graph = message_passing_graph(edges, updated.num_nodes, self_loops)
    model.eval()
    with torch.no_grad():
        h = model.encode(graph, model.node_inputs(x, index))
    new_nodes = [i for i, n in enumerate(updated.node_ids) if n not in trained]
    return Transformed(graph=updated, embeddings=h, new_nodes=new_nodes, edges=edges)


def full_embeddings(model: LinkPredictor, x: torch.Tensor, edges: np.ndarray, self_loops: bool) -> torch.Tensor:
    """Embeddings of the training nodes with every known edge in the message-passing graph."""
    return embed(model, message_passing_graph(edges, x.shape[0], self_loops), x)
