"""The graph family: GNN link prediction on DGL (``task=link_prediction``).

* :mod:`.task` -- :class:`~.task.LinkPredictionTask` and its config schema; cheap (no torch, no DGL);
* :mod:`.data` / :mod:`.module` -- the Lightning DataModule and LightningModule, built from explicit arguments;
* a plain library below them (no Lightning, no config objects), testable on tiny graphs in seconds:
  :mod:`.property_graph` and :mod:`.datasets` (readers), :mod:`.features` (encoding), :mod:`.split`,
  :mod:`.pipeline` (read -> encode -> split), :mod:`.nn` (encoders, scorers), :mod:`.training`,
  :mod:`.metrics`, :mod:`.recommend` (top-k, transform).

Import DGL only through :func:`sagelab.tasks.graph.dgl_shim.import_dgl`.
"""

# choices shared by the config schema (which must not import torch) and the models
ARCHS = ("graphsage", "gcn")
SCORERS = ("dot", "mlp")
AGGREGATORS = ("mean", "gcn", "pool", "lstm")
SAMPLING = ("full", "neighbor")
