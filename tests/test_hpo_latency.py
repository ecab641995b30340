"""The latency probe times the module's own predict_step on a batch it knows nothing about.

The modules here are tiny and defined in the test; their batches are not dicts, tuples or tensors (like the
graph task's ``Payload``), so a probe that assumed a Hugging Face batch would fail on them.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch

from test_hpo_study import compose


class Parcel:
    """An opaque batch, as the graph task's Payload: Lightning's collection helpers leave it alone."""

    __slots__ = ("x", "y", "moved")

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y, self.moved = x, y, False


def parcels(n: int, batch_size: int) -> torch.utils.data.DataLoader:
    gen = torch.Generator().manual_seed(0)
    data = [(torch.randn(3, generator=gen), torch.randint(0, 2, (), generator=gen)) for _ in range(n)]
    return torch.utils.data.DataLoader(
        data, batch_size=batch_size, collate_fn=lambda items: Parcel(*map(torch.stack, zip(*items)))
    )


class ParcelModule(L.LightningModule):
    """Trains on Parcels; predict_step and batch_size_of are the only things the probe may rely on."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(3, 2)
        self.predicted: list[tuple[Parcel, bool, bool, bool]] = []
        self.train_modes: list[bool] = []

    def transfer_batch_to_device(self, batch: Parcel, device: torch.device, dataloader_idx: int) -> Parcel:
        batch.x, batch.y, batch.moved = batch.x.to(device), batch.y.to(device), True
        return batch

    def batch_size_of(self, batch: Parcel) -> int:
        return len(batch.y)

    def training_step(self, batch: Parcel, batch_idx: int) -> torch.Tensor:
        self.train_modes.append(self.training)
        return torch.nn.functional.cross_entropy(self.layer(batch.x), batch.y)

    def validation_step(self, batch: Parcel, batch_idx: int) -> None:
        accuracy = (self.layer(batch.x).argmax(-1) == batch.y).float().mean()
        self.log("val/f1", accuracy, batch_size=len(batch.y))  # glue_mrpc's task.metric

    def predict_step(self, batch: Parcel, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        self.predicted.append((batch, self.training, torch.is_inference_mode_enabled(), torch.is_grad_enabled()))
        return self.layer(batch.x).argmax(-1)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class NoPredictModule(ParcelModule):
    """A module Lightning could not predict with: neither predict_step nor forward of its own."""

    predict_step = L.LightningModule.predict_step


def study_spec(tmp: Path, *overrides: str):
    from sagelab.hpo.spec import build_spec

    cfg = compose("task=glue_mrpc", "search_space=glue_instances", f"hpo.dir={tmp}/hpo", "hpo.max_resource=2",
                  "hpo.latency.warmup=1", "hpo.latency.repeats=2", *overrides)
    spec = build_spec(cfg, ["task=glue_mrpc"])
    spec.save()
    return spec


def fit(module: L.LightningModule, spec, batch_size: int = 5) -> dict:
    from sagelab.hpo.callback import HPOCallback

    trainer = L.Trainer(max_epochs=2, callbacks=[HPOCallback(str(spec.spec_path), 0, price_per_hour=0.23)],
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu", devices=1)
    trainer.fit(module, parcels(8, 4), parcels(12, batch_size))
    return json.loads((spec.trial_dir(0) / "result.json").read_text())


def test_latency_is_timed_with_predict_step_on_an_opaque_batch(tmp_path, monkeypatch):
    import sagelab.hpo.callback as callback

    counts = []
    real = callback.measure_latency_ms

    def spy(forward, n_examples, **kwargs):
        counts.append(n_examples)
        return real(forward, n_examples, **kwargs)

    monkeypatch.setattr(callback, "measure_latency_ms", spy)
    module = ParcelModule()
    result = fit(module, study_spec(tmp_path, "hpo=moasha"))

    assert counts == [5]  # once per trial, per example of the module's own count (batch_size_of)
    assert len(module.predicted) == 1 + 2  # warm-up, then the repeats
    batch, training, inference, grad = module.predicted[0]
    assert isinstance(batch, Parcel) and batch.moved  # as the loader made it, moved by the module's own hook
    assert len(batch.y) == 5  # the whole first validation batch
    assert all(p[0] is batch for p in module.predicted)
    assert (training, inference, grad) == (False, True, False)
    assert all(module.train_modes)  # training goes on in train mode
    rounds = result["history"]
    assert len(rounds) == 2 and all(r["latency_ms"] > 0 for r in rounds)
    assert rounds[0]["latency_ms"] == rounds[1]["latency_ms"]  # measured once, reported every round


def test_examples_are_counted_by_the_hook_else_the_first_tensor_else_one():
    from sagelab.hpo.callback import examples_in

    plain = L.LightningModule()
    assert examples_in(ParcelModule(), Parcel(torch.zeros(7, 3), torch.zeros(7))) == 7
    assert examples_in(plain, Parcel(torch.zeros(7, 3), torch.zeros(7))) == 1  # opaque, no hook
    assert examples_in(plain, {"input_ids": torch.zeros(6, 9), "labels": torch.zeros(6)}) == 6
    assert examples_in(plain, (torch.zeros(4, 2), torch.zeros(4))) == 4
    assert examples_in(plain, {"ids": ["a", "b", "c"], "x": torch.zeros(3, 5)}) == 3
    assert examples_in(plain, torch.zeros(2, 8)) == 2


def test_a_module_without_predict_step_reports_no_latency_unless_it_is_an_objective(tmp_path):
    from sagelab.hpo.callback import has_predict_step

    assert has_predict_step(ParcelModule) and not has_predict_step(NoPredictModule)
    result = fit(NoPredictModule(), study_spec(tmp_path / "asha", "hpo=asha", "search_space=glue_default"))
    assert len(result["history"]) == 2 and all("latency_ms" not in r for r in result["history"])

    with pytest.raises(RuntimeError, match="latency_ms times the module's predict_step"):
        fit(NoPredictModule(), study_spec(tmp_path / "moasha", "hpo=moasha"))
