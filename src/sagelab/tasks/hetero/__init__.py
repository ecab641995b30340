"""The heterogeneous graph family: R-GCN (and a type-blind GNN baseline) on typed property graphs.

* :mod:`.task` -- ``task=hetero_link_prediction`` and ``task=hetero_node_classification`` and their config schema,
  ``model=rgcn``'s schema; cheap (no torch, no DGL);
* :mod:`.prepare` -- per-type feature encoding, the target's split, the flattened message-passing graph;
* :mod:`.nn` -- typed inputs, R-GCN (DGL ``RelGraphConv``) or the graph family's homogeneous encoder;
* :mod:`.module` -- the two LightningModules. The DataModule is the node family's whole-graph one.

Reading (:mod:`sagelab.tasks.graph.hetero_graph`), feature encodings, splits and metrics are the graph family's.
"""
