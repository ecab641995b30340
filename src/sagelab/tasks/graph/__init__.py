"""Graph link prediction on DGL: property-graph readers, feature encoding, GNN encoders, metrics.

The modules here are a plain library (no Lightning, no config objects) so that they can be
tested on tiny graphs in seconds; :mod:`sagelab.tasks.graph.task` wires them to the runner.
Import DGL only through :func:`sagelab.tasks.graph.dgl_shim.import_dgl`.
"""

# choices shared by config checks (which must not import torch) and the models
ARCHS = ("graphsage", "gcn")
SCORERS = ("dot", "mlp")
AGGREGATORS = ("mean", "gcn", "pool", "lstm")
