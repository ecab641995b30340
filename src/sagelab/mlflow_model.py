"""The trained model as an MLflow pyfunc: what ``mlflow.pyfunc.load_model``, ``mlflow models serve`` and the
Model Registry get from a training run.

Why our own ``PythonModel`` rather than a transformers pipeline: every task already answers records through its
:class:`~sagelab.inference.Handler` (GLUE labels, QA spans over windows, NER pre-labels), so the pyfunc rebuilds
the task from its stored config and answers with that same handler -- one answer path for ``mode=predict``,
``mode=serve`` and MLflow. Nothing here knows a task by name.

The MLflow model (artifact path ``model`` of the run) stores, as pyfunc artifacts:

* ``config.yaml`` -- the run's resolved sagelab config;
* ``hf_model/`` -- for a module whose ``.model`` is a Hugging Face model: its ``save_pretrained`` folder (fine-tuned
  weights + config) and the tokenizer's, so it loads offline, without the base model it was trained from;
  ``module_state.pt`` then holds only the Lightning module's tensors outside ``.model`` (usually none);
* otherwise ``module_state.pt``, the whole Lightning ``state_dict``, loaded into ``task.module()`` built from the
  stored config.

The weights come from ``final.ckpt`` (consolidated even after ``strategy=fsdp``), not from the live module.
``runs:/<id>/model``, ``models:/<name>/<version>`` and ``models:/<name>@<alias>`` then load with
``mlflow.pyfunc.load_model`` and as ``checkpoint.load`` (:func:`load_module`). The serving environment needs
sagelab installed (it is not on PyPI, so it is not among the model's pip requirements).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import mlflow
from mlflow.pyfunc import PythonModel  # this module is imported only where a model is logged or loaded
from omegaconf import DictConfig, OmegaConf, open_dict

from sagelab.config import ConfigError, resolved

if TYPE_CHECKING:
    from sagelab.inference import Handler
    from sagelab.tasks.base import Task
    from sagelab.tracking import RunRecord

ARTIFACT_PATH = "model"
CONFIG, HF_MODEL, MODULE_STATE = "config.yaml", "hf_model", "module_state.pt"
#: pinned from this environment; sagelab itself must be installed where the model is served
REQUIREMENTS = ("mlflow", "torch", "lightning", "transformers", "tokenizers", "safetensors", "torchmetrics",
                "hydra-core", "omegaconf", "pandas", "seqeval")


# -- logging (rank 0, after final.ckpt) -------------------------------------------------------------------------
def log(record: RunRecord, task: Task, cfg: DictConfig, checkpoint: Path) -> str:
    """Log ``checkpoint`` as the run's MLflow model; register it when ``logger.register_as`` is set.
    Returns the model's ``runs:/`` URI."""
    import mlflow.pyfunc
    from mlflow.models import Model

    # MLflow files a logged model under the active experiment, not its run's: without this, experiment 0
    mlflow.set_experiment(experiment_id=record.client.get_run(record.run_id).info.experiment_id)
    name = cfg.logger.get("register_as")
    with tempfile.TemporaryDirectory(prefix="sagelab-model-") as tmp, _quiet():
        stored = save(task, cfg, checkpoint, Path(tmp) / "stored")
        example, signature = _example_and_signature(stored)
        info = Model.log(
            artifact_path=None, name=ARTIFACT_PATH, flavor=mlflow.pyfunc, run_id=record.run_id,
            python_model=__file__,  # "models from code": loading runs this file instead of unpickling an object
            artifacts={p.name: str(p) for p in stored.iterdir()}, signature=signature, input_example=example,
            pip_requirements=_requirements(), registered_model_name=str(name) if name else None,
            metadata={"sagelab.task": str(cfg.task.name), "sagelab.model": str(cfg.model.name)},
        )
    uri = f"runs:/{record.run_id}/{ARTIFACT_PATH}"
    print(f"sagelab: logged MLflow model {uri}", file=sys.stderr)
    if name:
        version = info.registered_model_version
        record.set_tag("sagelab.registered_model", f"{name}/{version}")
        print(f"sagelab: registered as '{name}' version {version} (models:/{name}/{version})", file=sys.stderr)
    return uri


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No weight-loading and artifact-copying bars, and no advice on integer columns and missing values (labels
    are never missing), while a model is logged."""
    import transformers

    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()
    previous = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Integer columns in Python cannot represent missing.*")
            yield
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = previous
        if bars:
            transformers.utils.logging.enable_progress_bar()


def save(task: Task, cfg: DictConfig, checkpoint: Path, folder: Path) -> Path:
    """Write the artifacts (see the module docstring) for the weights in ``checkpoint``; returns ``folder``."""
    import torch

    from sagelab.models import load_tokenizer
    from sagelab.safe_io import load_checkpoint

    folder.mkdir(parents=True)
    (folder / CONFIG).write_text(OmegaConf.to_yaml(resolved(cfg)))
    module = task.module()
    module.load_state_dict(load_checkpoint(checkpoint, "checkpoint.save_model")["state_dict"])
    state = module.state_dict()
    hf = getattr(module, "model", None)
    if hasattr(hf, "save_pretrained") and hasattr(hf, "config"):
        hf.save_pretrained(folder / HF_MODEL)
        load_tokenizer(cfg.model).save_pretrained(folder / HF_MODEL)
        state = {k: v for k, v in state.items() if not k.startswith("model.")}
    torch.save({"state_dict": state}, folder / MODULE_STATE)
    return folder


def _example_and_signature(stored: Path) -> tuple[Any, Any]:
    """The handler's example as a one-row DataFrame of its fields, and the signature it and its answer give
    (no output schema if MLflow cannot type the answer; neither if the handler has no example).

    The input columns are typed but left unnamed: MLflow checks a named schema before ``predict`` sees the input
    and would refuse a string or a list of strings, which handlers accept. The input example names them."""
    import pandas as pd
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types import ColSpec, Schema

    task, module = build(stored)
    handler = task.handler()
    if handler.example is None:
        return None, None
    records, _ = handler.parse_request(handler.example)
    example = pd.DataFrame([{f: r[f] for f in handler.fields} for r in records])
    inputs = Schema([ColSpec(c.type, required=c.required) for c in infer_signature(example).inputs.inputs])
    try:
        outputs = infer_signature(example, pd.DataFrame(answer(handler, module, records))).outputs
    except Exception:  # an answer MLflow's schema cannot describe: the inputs are what callers need
        outputs = None
    return example, ModelSignature(inputs=inputs, outputs=outputs)


def _requirements() -> list[str]:
    pinned = []
    for name in REQUIREMENTS:
        try:
            pinned.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return pinned


# -- loading ------------------------------------------------------------------------------------------------------
def build(stored: Path) -> tuple[Task, Any]:
    """The task and its module (eval mode) from a stored folder: the config with the model pointed at
    ``hf_model/`` (when there is one), then ``module_state.pt``."""
    from hydra.utils import get_class

    from sagelab.safe_io import load_checkpoint

    cfg = OmegaConf.load(stored / CONFIG)
    hf = stored / HF_MODEL
    if hf.is_dir():
        with open_dict(cfg):
            cfg.model.name_or_path, cfg.model.tokenizer = str(hf), str(hf)
            cfg.model.pretrained, cfg.model.config_overrides = True, {}  # the saved config has them applied
    task = get_class(str(cfg.task._target_))(cfg)
    module = task.module()
    state = load_checkpoint(stored / MODULE_STATE, "checkpoint.load")["state_dict"]
    result = module.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not (hf.is_dir() and k.startswith("model."))]
    if missing or result.unexpected_keys:
        raise ConfigError("checkpoint.load", f"the stored model does not fit task {task.name}'s module "
                          f"(missing {missing[:3]}, unexpected {result.unexpected_keys[:3]}).")
    return task, module.eval()


def is_stored_model(path: Path) -> bool:
    """An MLflow model folder written by :func:`log`."""
    return path.is_dir() and (path / "MLmodel").exists() and (path / "artifacts" / CONFIG).exists()


def load_module(path: Path, task: Task) -> Any:
    """``checkpoint.load`` given as an MLflow model: its module, refused if it was trained for another task."""
    if not is_stored_model(path):
        raise ConfigError("checkpoint.load", f"'{path}' is a folder but not an MLflow model logged by sagelab.")
    stored = path / "artifacts"
    target = OmegaConf.load(stored / CONFIG).task.get("_target_")
    if target != task.cfg.task.get("_target_"):
        raise ConfigError("checkpoint.load", f"'{path}' is a model of {target}, not of {task.cfg.task._target_}.")
    return build(stored)[1]


def answer(handler: Handler, module: Any, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    import torch

    with torch.no_grad():
        return handler.answer(module, records)


def records_of(handler: Handler, model_input: Any) -> list[dict[str, Any]]:
    """What ``predict`` receives -> records: a DataFrame (``dataframe_split`` / ``dataframe_records``), a list of
    dicts or strings, a dict or a string. A bad item is MLflow's invalid-input error (HTTP 400 when served)."""
    import pandas as pd
    from mlflow.exceptions import INVALID_PARAMETER_VALUE, MlflowException

    if isinstance(model_input, pd.DataFrame):
        if list(model_input.columns) == list(range(len(handler.fields))):  # strings or lists, framed by MLflow
            model_input = model_input.set_axis(handler.fields, axis=1)
        model_input = model_input.to_dict(orient="records")
    records, problems = handler.parse_request(model_input)
    if problems:
        raise MlflowException("; ".join(problems), error_code=INVALID_PARAMETER_VALUE)
    return records


class SagelabModel(PythonModel):
    """The pyfunc: a task rebuilt from the stored folder, answering through its handler."""

    # No type-hint validation of predict (MLflow would warn that there are no hints on every load): the input
    # shapes a handler takes are checked by the handler, and the signature is given explicitly.
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        self.task, self.module = build(Path(context.artifacts[CONFIG]).parent)
        self.handler = self.task.handler()

    def predict(self, context: Any, model_input, params=None):  # noqa: ANN001 -- MLflow reads these hints
        """One answer dict per record, in input order."""
        return answer(self.handler, self.module, records_of(self.handler, model_input))


# Models from code: MLflow runs this file to load the model and takes the model set here.
mlflow.models.set_model(SagelabModel())
