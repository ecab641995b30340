"""Sentence embeddings from a transformer encoder, with the seed's pooling and two alternatives.

Poolings (``task.pooling``):

* ``second_to_last_mean`` -- the seed: mean over the real tokens of the
  second-to-last hidden layer (the seed embeds one sentence at a time, so it
  never sees padding; batched here, the attention mask keeps padding out of
  the mean, which gives the same vectors);
* ``last_mean`` -- mean over real tokens of the last layer (sentence-transformers' choice);
* ``cls`` -- the last layer's first ([CLS]) token.

The encoder is either ``cfg.model`` (any ``model=``) or the backbone of a
fine-tuned sagelab checkpoint; see :func:`load_encoder`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from sagelab.tasks.drift.task import POOLINGS  # declared beside the config schema that checks task.pooling

if TYPE_CHECKING:
    import torch


def pool(hidden_states: Sequence[torch.Tensor], attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool one batch: ``hidden_states`` is the model's tuple (embeddings, layer 1, ..., layer L)."""
    if pooling == "cls":
        return hidden_states[-1][:, 0]
    if pooling == "second_to_last_mean":
        if len(hidden_states) < 3:
            raise ValueError("second_to_last_mean pooling needs a model with at least 2 layers")
        layer = hidden_states[-2]
    elif pooling == "last_mean":
        layer = hidden_states[-1]
    else:
        raise ValueError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
    mask = attention_mask.unsqueeze(-1).to(layer.dtype)
    return (layer * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def embed_texts(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    pooling: str = "second_to_last_mean",
    batch_size: int = 32,
    max_length: int = 128,
) -> np.ndarray:
    """Embed ``texts`` into a ``(len(texts), hidden)`` float32 array, in input order.

    Texts are batched by length (longest first) so that padding, which costs
    compute but does not change the pooled vectors, stays small.
    """
    import torch

    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
    texts = list(texts)
    hidden = int(model.config.hidden_size)
    out = np.zeros((len(texts), hidden), dtype=np.float32)
    if not texts:
        return out
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    from sagelab import progress

    model.eval()
    with torch.inference_mode():
        starts = range(0, len(order), batch_size)
        for start in progress.bar(starts, desc=f"embedding {len(texts)} texts", unit="batch"):
            idx = order[start : start + batch_size]
            enc = tokenizer(
                [texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            outputs = model(
                input_ids=enc["input_ids"],
                attention_mask=enc["attention_mask"],
                output_hidden_states=True,
            )
            pooled = pool(outputs.hidden_states, enc["attention_mask"], pooling)
            out[idx] = pooled.float().cpu().numpy()
    return out


def backbone_state_dict(state_dict: dict[str, Any], backbone_keys: set[str]) -> dict[str, Any]:
    """Pick the encoder weights out of a task checkpoint's state dict.

    A sagelab LightningModule stores its network under some attribute
    (``model.bert.encoder...`` for a sequence classifier) while a bare
    ``AutoModel`` expects ``encoder...``. The prefix is found by matching key
    suffixes against the encoder's own key names, so any task module works.
    """
    prefixes = set()
    for key in state_dict:
        for own in backbone_keys:
            if key == own or key.endswith("." + own):
                prefixes.add(key[: len(key) - len(own)])
    best: dict[str, Any] = {}
    for prefix in prefixes:
        picked = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
        picked = {k: v for k, v in picked.items() if k in backbone_keys}
        if len(picked) > len(best):
            best = picked
    return best


def load_encoder(model_cfg: Any, checkpoint: str | Path | None = None,
                 key: str = "task.encoder_checkpoint") -> tuple[Any, Any]:
    """``(model, tokenizer)``: ``model_cfg``'s encoder, with a fine-tuned checkpoint's weights if given.

    ``checkpoint`` is a Lightning ``.ckpt`` file or a Hugging Face model folder
    (a ``save_pretrained`` export); its backbone weights replace the encoder's. A ``.ckpt`` is unpickled as
    tensors and plain data only; anything else is a ``ConfigError`` on ``key``.
    """
    from omegaconf import OmegaConf
    from transformers import AutoModel

    from sagelab.models import load_model, load_tokenizer
    from sagelab.safe_io import load_checkpoint

    tokenizer = load_tokenizer(model_cfg)
    if checkpoint is not None and Path(checkpoint).is_dir():
        model = AutoModel.from_pretrained(str(checkpoint), output_hidden_states=True)
        return model.eval(), tokenizer
    # every pooling reads hidden_states, so the config asks for them
    plain = OmegaConf.to_container(model_cfg, resolve=True) if OmegaConf.is_config(model_cfg) else dict(model_cfg)
    model_cfg = OmegaConf.merge(plain, {"config_overrides": {"output_hidden_states": True}})
    blob = load_checkpoint(checkpoint, key) if checkpoint is not None else None  # refused before any model work
    model = load_model(model_cfg, AutoModel)
    if blob is not None:
        state = blob.get("state_dict", blob)
        own = model.state_dict()
        picked = backbone_state_dict(state, set(own))
        if len(picked) < len(own) // 2:
            raise ValueError(
                f"checkpoint '{checkpoint}' holds {len(picked)} of the {len(own)} encoder weights of "
                f"model '{model_cfg.name_or_path}': was it trained with a different model= ?"
            )
        model.load_state_dict(picked, strict=False)
    return model.eval(), tokenizer
