"""Link prediction's side of ``mode=diagnose``: held-out edges against their fixed negatives, as a binary
classifier of "is this pair linked".

The evaluation set is the test edges (the validation edges when the split holds none out for test), each
scored against its ``task.eval_negs`` negatives -- the same pairs ``test/auc`` is computed on -- with the
probability ``sigmoid(logit)``. Positives are therefore 1 in ``eval_negs + 1`` of the set: set
``diagnose.prevalence`` to the link rate you expect among candidate pairs. Edges are not texts, so the
data checks and word attributions do not apply (the split already keeps held-out edges out of training).

Variable importance is by permutation over the node properties: the fitted feature encoding gives each
encoded property a contiguous block of feature columns (:meth:`FeatureEncoder.dims`, in encoding order);
shuffling one block's rows across the nodes, re-embedding the whole graph and rescoring the same pairs shows
how much AUC the model owes to that property. A learned id embedding (``task.id_embedding``) and the graph's
structure are not properties and are never shuffled. Cost per (property, repeat): one full-graph forward pass
plus the scoring of the evaluation pairs -- the same as the scoring above, with no re-encoding (the encoded
matrix is permuted), so ``properties x diagnose.permutation_repeats`` passes in all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    import torch

    from sagelab.context import TaskContext
    from sagelab.diagnose import DiagnoseInputs
    from sagelab.tasks.graph.module import LinkPredictionModule
    from sagelab.tasks.graph.pipeline import PreparedGraph
    from sagelab.tasks.graph.task import LinkPredictionTask


def diagnose_inputs(task: LinkPredictionTask, context: TaskContext) -> DiagnoseInputs:
    import torch

    from sagelab.config import ConfigError
    from sagelab.diagnose import DiagnoseInputs

    module, data = context.load_module(), task.prepared()
    if module.node_ids != data.graph.node_ids:
        raise ConfigError("task.dataset", f"the graph ({data.graph.source}) is not the one the checkpoint was "
                          "trained on.")
    split, positives, negatives = ("test", data.split.test, data.test_negatives) if len(data.split.test) else (
        "val", data.split.val, data.val_negatives)
    k = negatives.shape[1]
    pairs = torch.as_tensor(np.concatenate(
        [positives, np.stack([np.repeat(positives[:, 0], k), negatives.reshape(-1)], axis=1)]))
    columns = property_columns(data)
    names = data.names
    return DiagnoseInputs(
        scores=_score(module, data, pairs), labels=[1] * len(positives) + [0] * (len(pairs) - len(positives)),
        texts=[f"{names[s]} -> {names[d]}" for s, d in pairs.tolist()], positive="linked",
        source={"eval": f"{split} edges of {data.graph.source}: {len(positives)} positives, {k} negatives each"},
        features=list(columns), permuted=_permuted(module, data, pairs, columns),
    )


def property_columns(data: PreparedGraph) -> dict[str, slice]:
    """Each encoded node property's columns of ``data.x``, in encoding order (properties of type ``none``
    have none). Empty when the widths do not add up to the matrix (then no importance is offered rather
    than one computed over the wrong columns)."""
    columns, start = {}, 0
    for prop, _kind, width in data.encoder.dims():
        if width:
            columns[prop] = slice(start, start + width)
            start += width
    return columns if start == int(data.x.shape[1]) else {}


def _score(module: LinkPredictionModule, data: PreparedGraph, pairs: torch.Tensor,
           x: torch.Tensor | None = None) -> list[float]:
    """P(linked) of ``pairs`` from the embeddings of the training graph with node features ``x`` (default
    ``data.x``)."""
    import torch

    from sagelab.tasks.graph.training import score_edges

    h = module.embeddings(data, x)
    with torch.no_grad(), torch.autocast(device_type="cpu", enabled=False):
        return torch.sigmoid(score_edges(module.model, h, pairs.to(h.device))).tolist()


def _permuted(module: LinkPredictionModule, data: PreparedGraph, pairs: torch.Tensor,
              columns: dict[str, slice]) -> Callable[[str, int], list[float]]:
    """(property, seed) -> the pairs rescored with that property's columns shuffled across the nodes."""

    def rescore(prop: str, seed: int) -> list[float]:
        import torch

        order = torch.as_tensor(np.random.default_rng(seed).permutation(data.num_nodes))
        x = data.x.clone()
        x[:, columns[prop]] = data.x[order][:, columns[prop]]
        return _score(module, data, pairs, x)

    return rescore
