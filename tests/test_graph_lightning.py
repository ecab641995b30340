"""The Lightning pair on its own: built from explicit arguments, no config, no trainer, no runner."""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch

from sagelab.config import PROJECT_ROOT
from sagelab.tasks.graph.data import LinkDataModule, Payload
from sagelab.tasks.graph.module import LinkPredictionModule
from sagelab.tasks.graph.pipeline import PreparedGraph, prepare
from sagelab.tasks.graph.property_graph import read_gremlin_csv
from sagelab.tasks.graph.recommend import full_embeddings

torch.set_num_threads(1)
EXAMPLE = PROJECT_ROOT / "data" / "graph" / "example"


@pytest.fixture(scope="module")
def data() -> PreparedGraph:
    graph = read_gremlin_csv(EXAMPLE / "nodes.csv", EXAMPLE / "edges.csv")
    # job's sentence embedding is switched off: age buckets + interests suffice here, and cost no model load
    return prepare(graph, {"job": {"type": "none"}}, "name", val=0.1, test=0.1, eval_negs=20, seed=0)


def module_for(data: PreparedGraph, scorer: str = "dot", dropout: float = 0.0) -> LinkPredictionModule:
    torch.manual_seed(0)
    return LinkPredictionModule(int(data.x.shape[1]), data.num_nodes, arch="graphsage", hidden_dim=16, num_layers=2,
                                dropout=dropout, aggregator="mean", scorer=scorer)


@pytest.mark.parametrize("scorer", ["dot", "mlp"])
def test_predict_step_gives_embeddings_and_validation_scores(data: PreparedGraph, scorer: str) -> None:
    module = module_for(data, scorer=scorer, dropout=0.5).train()  # predict_step must not use dropout
    batch = next(iter(LinkDataModule(data).val_dataloader()))
    assert isinstance(batch, Payload) and batch.kind == "eval"
    out = module.predict_step(batch, 0)
    assert out["embeddings"].shape == (32, 16)
    assert out["scores"].shape == (len(data.split.val),)
    h = full_embeddings(module.model, data.x, data.split.train, module.model.needs_self_loops)
    assert torch.allclose(out["embeddings"], h)  # the training graph, eval mode
    val = torch.as_tensor(data.split.val)
    module.eval()
    assert torch.allclose(out["scores"], module.model.score(h, val[:, 0], val[:, 1]))
    assert module.training is False and not out["scores"].requires_grad


def test_sampled_batches_carry_their_input_features(data: PreparedGraph) -> None:
    loader = LinkDataModule(data, sampling="neighbor", fanouts=[3, 3], batch_size=16, seed=1).train_dataloader()
    batch = next(iter(loader))
    input_nodes, pair, neg, blocks, inputs = batch.value
    assert batch.kind == "sampled" and len(blocks) == 2 and pair.num_edges() == 16
    assert torch.equal(inputs, data.x[input_nodes])


SAMPLED = """
import sys, torch
from sagelab.tasks.graph.data import LinkDataModule
from sagelab.tasks.graph.dgl_shim import import_dgl
from sagelab.tasks.graph.pipeline import prepare
from sagelab.tasks.graph.property_graph import read_gremlin_csv
seed, before, where = int(sys.argv[1]), int(sys.argv[2]), sys.argv[4]
torch.set_num_threads(2)  # DGL's generators are per thread: one thread alone would hide their seeding
dgl = import_dgl()  # on the main thread, as in a command
graph = read_gremlin_csv(sys.argv[3] + "/nodes.csv", sys.argv[3] + "/edges.csv")
data = prepare(graph, {"job": {"type": "none"}}, "name", val=0.1, test=0.1, eval_negs=20, seed=0)
torch.manual_seed(seed)  # as seed_everything does at the start of a run
if where == "other thread":  # another thread seeds DGL before the main thread ever does
    import threading
    other = threading.Thread(target=dgl.seed, args=(before,))
    other.start()
    other.join()
else:
    dgl.seed(before)  # whatever seeded DGL earlier in the command, on two OpenMP threads
loader = LinkDataModule(data, sampling="neighbor", fanouts=[2, 2], batch_size=8, seed=seed).train_dataloader()
for batch, _ in zip(loader, range(3)):
    print([b.srcdata["_ID"].tolist() for b in batch.value[3]])
"""


def test_sampled_batches_are_the_same_for_the_same_seed() -> None:
    """The neighbour sampler draws from DGL's generator, which Lightning's seed_everything leaves alone: the
    datamodule's seed must fix it, whatever drew from it before (negatives come from torch's, which it seeds),
    on more than one thread too. Each draw is a fresh process, as each command is."""
    import subprocess
    import sys

    def first_batches(seed: int, before: int, where: str = "main thread") -> str:
        done = subprocess.run([sys.executable, "-c", SAMPLED, str(seed), str(before), str(EXAMPLE), where],
                              capture_output=True, text=True, timeout=300, check=True)
        return done.stdout

    once = first_batches(1, before=7)
    assert first_batches(1, before=8) == once
    # DGL numbers each thread's random stream in the order threads first seed: the main thread's must not
    # depend on who seeded first (dgl_shim claims it at import)
    assert first_batches(1, before=8, where="other thread") == once
    assert first_batches(2, before=7) != once


def test_graph_state_is_plain_data_that_loads_with_weights_only(data: PreparedGraph) -> None:
    module = module_for(data)
    features = copy.deepcopy(data.encoder.state_dict())
    features["specs"][0]["mean"] = np.array([1.5])  # numpy sneaking in must not reach the checkpoint
    module.set_graph_state(features, data.graph.node_ids, data.names)
    buffer = io.BytesIO()
    torch.save({"state_dict": module.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)["state_dict"]  # as the runner's load_module does
    assert state["_extra_state"]["features"]["specs"][0]["mean"] == [1.5]

    restored = module_for(data)
    restored.load_state_dict(state)
    assert restored.node_ids == data.graph.node_ids and restored.graph_state["names"][0] == "Henry"
    assert restored.feature_encoder().transform(data.graph).shape == tuple(data.x.shape)
    with pytest.raises(TypeError, match="not plain data"):
        module.set_graph_state({"specs": [object()]}, [], [])
