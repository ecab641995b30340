"""Link prediction's side of ``mode=diagnose``: held-out edges against their fixed negatives, as a binary
classifier of "is this pair linked".

The evaluation set is the test edges (the validation edges when the split holds none out for test), each
scored against its ``task.eval_negs`` negatives -- the same pairs ``test/auc`` is computed on -- with the
probability ``sigmoid(logit)``. Positives are therefore 1 in ``eval_negs + 1`` of the set: set
``diagnose.prevalence`` to the link rate you expect among candidate pairs. Edges are not texts, so the
data checks and word attributions do not apply (the split already keeps held-out edges out of training).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sagelab.context import TaskContext
    from sagelab.diagnose import DiagnoseInputs
    from sagelab.tasks.graph.task import LinkPredictionTask


def diagnose_inputs(task: LinkPredictionTask, context: TaskContext) -> DiagnoseInputs:
    import torch

    from sagelab.config import ConfigError
    from sagelab.diagnose import DiagnoseInputs
    from sagelab.tasks.graph.training import score_edges

    module, data = context.load_module(), task.prepared()
    if module.node_ids != data.graph.node_ids:
        raise ConfigError("task.dataset", f"the graph ({data.graph.source}) is not the one the checkpoint was "
                          "trained on.")
    split, positives, negatives = ("test", data.split.test, data.test_negatives) if len(data.split.test) else (
        "val", data.split.val, data.val_negatives)
    k = negatives.shape[1]
    pairs = np.concatenate([positives, np.stack([np.repeat(positives[:, 0], k), negatives.reshape(-1)], axis=1)])
    h = module.embeddings(data)
    with torch.no_grad(), torch.autocast(device_type="cpu", enabled=False):
        scores = torch.sigmoid(score_edges(module.model, h, torch.as_tensor(pairs))).tolist()
    names = data.names
    return DiagnoseInputs(
        scores=scores, labels=[1] * len(positives) + [0] * (len(pairs) - len(positives)),
        texts=[f"{names[s]} -> {names[d]}" for s, d in pairs.tolist()], positive="linked",
        source={"eval": f"{split} edges of {data.graph.source}: {len(positives)} positives, {k} negatives each"},
    )
