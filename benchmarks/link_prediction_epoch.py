"""Link-prediction epoch time: sagelab's runner (Lightning + MLflow) vs a plain DGL training loop.

    .venv/bin/python benchmarks/link_prediction_epoch.py                   # Cora full-graph + Twitch mini-batch
    .venv/bin/python benchmarks/link_prediction_epoch.py --datasets cora --epochs 40

Both sides train the same :class:`~sagelab.tasks.graph.nn.LinkPredictor` (GraphSAGE, hidden 128, 2 layers)
on the same prepared graph, one thread each, with the same optimiser and loss:

* Cora: full-graph, one step per epoch;
* Twitch: through the property-graph CSV path, neighbour-sampled mini-batches (fanouts 10,10,
  1,024 edges a batch) -- the plain side uses DGL's own ``dgl.dataloading.DataLoader``.

sagelab's side is ``python run.py task=link_prediction ...`` minus the command line: the runner's
``fit`` with its checkpointing and MLflow logging. Its *training epoch* is timed from the epoch start
to the end of its last training batch (validation, which the plain loop does not do, is reported
separately). The two sides alternate (plain, sagelab, plain, sagelab) so that load from other
processes hits both; each reports the median epoch after the first. The ratio goal is <= 1.1.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import lightning as L  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

SETTINGS = {
    "cora": ["task.dataset=cora", "task.sampling=full"],
    "twitch": ["task.dataset=twitch", "task.sampling=neighbor", "task.fanouts=[10,10]", "optim.batch_size=1024"],
}


class EpochTimer(L.Callback):
    """Training time per epoch (start -> last batch end) and validation time, in seconds."""

    def __init__(self) -> None:
        self.train: list[float] = []
        self.val: list[float] = []

    def on_train_epoch_start(self, *args: Any) -> None:
        self._start = self._last = time.perf_counter()

    def on_train_batch_end(self, *args: Any) -> None:
        self._last = time.perf_counter()

    def on_validation_start(self, trainer: L.Trainer, *args: Any) -> None:
        self._val = time.perf_counter()
        if trainer.state.fn == "fit":
            self.train.append(self._last - self._start)

    def on_validation_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.state.fn == "fit":
            self.val.append(time.perf_counter() - self._val)


def compose(dataset: str, epochs: int, tmp: Path) -> Any:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    import sagelab.config  # noqa: F401  (resolvers)
    import sagelab.schema  # noqa: F401  (the typed schema conf/config.yaml starts from)

    overrides = [
        "task=link_prediction", "model=graphsage", "instance=local_cpu1", f"trainer.max_epochs={epochs}",
        "trainer.precision=32-true", "trainer.gradient_clip_val=null", "trainer.enable_progress_bar=false",
        "optim.lr=0.01", "optim.weight_decay=0", "checkpoint.resume=never", f"checkpoint.dir={tmp}/ckpt",
        f"logger.tracking_uri=sqlite:///{tmp}/mlflow.db", f"logger.artifact_location={tmp}/artifacts",
        "checkpoint.save_model=false", *SETTINGS[dataset],
    ]
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = hydra_compose("config", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.output_dir = str(tmp / "out")
        cfg.callbacks = {"timer": {"_target_": "__main__.EpochTimer"}}
    return cfg


def sagelab_epochs(task: Any, cfg: Any) -> tuple[list[float], list[float]]:
    from sagelab.runner import Runner
    from sagelab import tracking

    runner = Runner(cfg, task)
    runner.record = tracking.RunRecord(cfg, None, True)
    L.seed_everything(0, verbose=False)
    timers: list[EpochTimer] = []
    original = runner.trainer

    def trainer_with_timer(callbacks: list[Any]) -> Any:
        trainer = original(callbacks)
        timers.extend(cb for cb in trainer.callbacks if isinstance(cb, EpochTimer))
        return trainer

    runner.trainer = trainer_with_timer  # type: ignore[method-assign]
    runner.fit(task.module(), task.datamodule())
    runner.record.finish("FINISHED")
    return timers[0].train, timers[0].val


def plain_epochs(task: Any, cfg: Any) -> list[float]:
    """The textbook DGL loop: same model class, optimiser and loss, no framework around it."""
    from sagelab.tasks.graph.dgl_shim import import_dgl
    from sagelab.tasks.graph.nn import LinkPredictor
    from sagelab.tasks.graph.training import reverse_edge_ids

    dgl = import_dgl()
    data, m = task.prepared(), cfg.model
    torch.manual_seed(0)
    model = LinkPredictor(data.x.shape[1], data.num_nodes, "graphsage", int(m.hidden_dim), int(m.num_layers),
                          float(m.dropout), str(m.aggregator), str(m.scorer))
    opt = torch.optim.Adam(model.parameters(), lr=float(cfg.optim.lr))
    graph, x = data.dgl_graph("train", False), data.x
    train = torch.as_tensor(data.split.train)
    negs = int(cfg.task.neg_ratio)
    loader = None
    if cfg.task.sampling == "neighbor":
        sampler = dgl.dataloading.as_edge_prediction_sampler(
            dgl.dataloading.NeighborSampler(list(cfg.task.fanouts)), exclude="reverse_id",
            reverse_eids=reverse_edge_ids(len(train), data.num_nodes),
            negative_sampler=dgl.dataloading.negative_sampler.Uniform(negs))
        loader = dgl.dataloading.DataLoader(graph, torch.arange(len(train)), sampler,
                                            batch_size=int(cfg.optim.batch_size), shuffle=True)
    times = []
    for _ in range(int(cfg.trainer.max_epochs)):
        start = time.perf_counter()
        model.train()
        if loader is None:
            h = model(graph, x)
            neg_dst = torch.randint(0, data.num_nodes, (len(train) * negs,))
            pos = model.score(h, train[:, 0], train[:, 1])
            _step(opt, pos, model.score(h, train[:, 0].repeat_interleave(negs), neg_dst))
        else:
            for input_nodes, pair, neg_pair, blocks in loader:
                h = model(blocks, x[input_nodes])
                _step(opt, model.score(h, *pair.edges()), model.score(h, *neg_pair.edges()))
        times.append(time.perf_counter() - start)
    return times


def _step(opt: torch.optim.Optimizer, pos: torch.Tensor, neg: torch.Tensor) -> None:
    loss = F.binary_cross_entropy_with_logits(torch.cat([pos, neg]), torch.cat([torch.ones_like(pos), torch.zeros_like(neg)]))
    opt.zero_grad()
    loss.backward()
    opt.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["cora", "twitch"], choices=sorted(SETTINGS))
    parser.add_argument("--epochs", type=int, default=None, help="per measurement (default: cora 30, twitch 4)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating plain/sagelab measurements")
    args = parser.parse_args()
    from sagelab import hardware

    print(f"machine: {hardware.describe()}", flush=True)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    from sagelab.tasks.graph.task import LinkPredictionTask

    for dataset in args.datasets:
        epochs = args.epochs or {"cora": 30, "twitch": 4}[dataset]
        with tempfile.TemporaryDirectory() as tmp:
            cfg = compose(dataset, epochs, Path(tmp))
            task = LinkPredictionTask(cfg)
            task.validate()
            data = task.prepared()
            plain, ours, val = [], [], []
            for _ in range(args.rounds):
                plain += plain_epochs(task, cfg)[1:]
                train_times, val_times = sagelab_epochs(task, cfg)
                ours += train_times[1:]
                val += val_times[1:]
        p, s = statistics.median(plain), statistics.median(ours)
        print(f"{dataset}: {data.num_nodes:,} nodes, {len(data.split.train):,} training edges, "
              f"sampling={cfg.task.sampling}, GraphSAGE hidden {cfg.model.hidden_dim}, 1 thread, "
              f"{args.rounds} x {epochs} epochs a side (medians, first epoch of each run dropped)")
        print(f"  plain DGL loop        : {p:8.4f} s/epoch")
        print(f"  sagelab runner        : {s:8.4f} s/epoch  (+ {statistics.median(val):.4f} s validation + logging)")
        print(f"  ratio sagelab / plain : {s / p:8.3f}  (goal <= 1.1)")


if __name__ == "__main__":
    main()
