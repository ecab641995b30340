"""What every Hugging Face fine-tuning task shares: the optimizer recipe and sharding.

Subclasses build ``self.model`` in :meth:`build_model` and implement the steps;
this base gives them AdamW with the usual no-decay groups, a linear warm-up /
linear decay schedule over the steps Lightning will actually take, and
``configure_model`` hooks for the sharded strategy (``strategy=fsdp``: each
encoder layer is wrapped with ``fully_shard`` so parameters, gradients and
optimizer state are split across processes).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig


class HFModule(L.LightningModule):
    def __init__(self, cfg: DictConfig) -> None:
        super().__init__()
        self.cfg = cfg
        # from_pretrained returns eval mode and Lightning 2.6 keeps submodule modes as it finds them:
        # without train() here, fine-tuning would run with dropout off.
        self.model = self.build_model().train()

    def build_model(self) -> torch.nn.Module:
        raise NotImplementedError

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """HF models return their task loss when the batch carries labels (or start/end positions)."""
        loss = self.model(**batch).loss
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["input_ids"]))
        return loss

    def configure_model(self) -> None:
        mesh = getattr(self, "_device_mesh", None)
        if mesh is None or getattr(self, "_sharded", False):  # validate() after fit() calls this again
            return
        from torch.distributed.fsdp import fully_shard

        # ModelParallelStrategy's mesh is (data_parallel, tensor_parallel); given both dims fully_shard would
        # replicate over the first (HSDP), so shard over the data-parallel dim only.
        mesh = mesh["data_parallel"]
        for layer in self.transformer_layers():
            fully_shard(layer, mesh=mesh)
        fully_shard(self.model, mesh=mesh)
        self._sharded = True

    def transformer_layers(self) -> list[torch.nn.Module]:
        """The repeated blocks to shard one by one (BERT-family encoders by default)."""
        base = getattr(self.model, self.model.base_model_prefix, self.model)
        encoder = getattr(base, "encoder", None)
        return list(getattr(encoder, "layer", [])) if encoder is not None else []

    def configure_gradient_clipping(self, optimizer: Any, gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        """Clip directly unless a loss scaler is active: Lightning's mixed-precision plugin refuses to clip for any
        fused optimizer, though under bf16 (no scaler) the gradients are already the real ones."""
        if not gradient_clip_val or getattr(self.trainer.precision_plugin, "scaler", None) is not None:
            return super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if gradient_clip_algorithm == "value":
            torch.nn.utils.clip_grad_value_(params, gradient_clip_val)
        else:
            torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)

    def configure_optimizers(self) -> dict[str, Any]:
        from transformers import get_linear_schedule_with_warmup

        optim = self.cfg.optim
        no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
        named = [(n, p) for n, p in self.named_parameters() if p.requires_grad]
        groups = [
            {"params": [p for n, p in named if not n.endswith(no_decay)], "weight_decay": optim.weight_decay},
            {"params": [p for n, p in named if n.endswith(no_decay)], "weight_decay": 0.0},
        ]
        # fused: one kernel over all parameters, ~10x faster than the per-tensor loop on CPU (7.6 vs 76 ms a step
        # for MiniLM; HF Trainer's default). fp16's loss scaler needs the unfused one to clip unscaled gradients.
        fused = str(self.cfg.trainer.precision) != "16-mixed"
        optimizer = torch.optim.AdamW(groups, lr=optim.lr, fused=fused)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = get_linear_schedule_with_warmup(optimizer, int(optim.warmup_ratio * total), total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
