"""Node classification and regression on a graph (``task=node_classification``, ``task=node_regression``): a GNN
labels nodes (a class, or a number) from their features and neighbourhood, transductively (the whole graph is
seen; only the training nodes' targets are).

* :mod:`.task` -- :class:`~.task.NodeClassificationTask` and its config schema; cheap (no torch, no DGL);
* :mod:`.prepare` -- dataset -> features, class targets and the train/val/test node masks;
* :mod:`.data` / :mod:`.module` -- the Lightning DataModule and LightningModule, from explicit arguments.

Reading graphs, encoding properties and the GNN encoder are the graph family's (:mod:`sagelab.tasks.graph`):
the same ``task.datasets`` entries and ``model=gcn`` / ``model=graphsage`` serve both families.
"""

SPLITS = ("planetoid", "random")
DECAY = ("first", "all")  # which parameters optim.weight_decay regularises
OBJECTIVES = ("classification", "regression")
