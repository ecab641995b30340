"""The typed shape of a sagelab config: one dataclass per top-level block, registered in Hydra's ConfigStore.

``conf/config.yaml`` starts its defaults list with ``sagelab_schema``, so Hydra composes every YAML file and
override into these types: a key that is not here is refused, and a value of the wrong type
(``seed=abc``, ``optim.batch_size=2.5``) cannot enter the config. The YAML files keep the default values;
this module keeps the types and, beside each field, the value check that types cannot express
(``optim.lr`` must be positive). Task families add their own block schema (``Task.config_class``).

Two entry points, both cheap (no torch, no Lightning):

* :mod:`sagelab.overrides` -- the command line against the schema, before Hydra composes;
* :func:`check_values` -- the per-field value checks over a composed config (or a task block);
* :func:`typed` -- a block merged into its dataclass, schema errors raised as :class:`ConfigError`.
"""

from __future__ import annotations

import math
from dataclasses import MISSING as NO_FACTORY
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Optional

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sagelab.checks import (Check, at_least_one, band_thresholds, each, fraction, holdout_size, non_negative, one_of,
                            open_fraction, percentage, port_number, positive, score_range, thread_count)
from sagelab.config import ConfigError

def checked(default: Any = MISSING, *checks: Check, **kwargs: Any) -> Any:
    """A dataclass field with value checks beside it: ``lr: float = checked(MISSING, positive)``."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: default, metadata={"checks": checks}, **kwargs)
    return field(default=default, metadata={"checks": checks}, **kwargs)


PRECISIONS = ("auto", "32-true", "32", "bf16-mixed", "bf16-true", "16-mixed", "64-true")


# -- the top-level blocks ------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class TrainerConfig:
    """Keyword arguments of ``lightning.Trainer`` that a user sets; the runner adds devices, strategy, logger."""

    max_epochs: int = checked(MISSING, positive)
    max_steps: int = -1
    precision: str = checked("auto", one_of(*PRECISIONS))  # auto: bf16 where the hardware has it natively
    accumulate_grad_batches: int = checked(1, at_least_one)
    val_check_interval: Any = 1.0  # a fraction of an epoch (float) or a number of batches (int)
    check_val_every_n_epoch: Optional[int] = 1  # null: an int val_check_interval counts batches across epochs
    log_every_n_steps: int = checked(10, at_least_one)
    gradient_clip_val: Optional[float] = checked(None, non_negative)
    deterministic: bool = False
    enable_progress_bar: bool = True


@dataclass(kw_only=True)
class DataConfig:
    train_limit: Optional[int] = checked(None, positive)
    eval_limit: Optional[int] = checked(None, positive)
    holdout: Optional[float] = checked(None, holdout_size)
    holdout_seed: int = 0
    max_length: int = checked(128, positive)
    group_by_length: bool = True
    num_workers: int = checked(0, non_negative)


@dataclass(kw_only=True)
class OptimConfig:
    lr: float = checked(MISSING, positive)
    weight_decay: float = checked(0.0, non_negative)
    warmup_ratio: float = checked(0.0, fraction)
    batch_size: int = checked(MISSING, positive)
    eval_batch_size: int = checked(MISSING, positive)


@dataclass(kw_only=True)
class CheckpointConfig:
    dir: Optional[str] = None
    run_only_keys: list[str] = field(default_factory=list)
    every_n_steps: int = checked(50, non_negative)
    resume: str = "auto"
    load: Optional[str] = None  # .ckpt, MLflow run id, runs:/<id>/model, models:/<name>/<version> or @<alias>
    save_model: bool = True


@dataclass(kw_only=True)
class PredictConfig:
    """``mode=predict`` / ``mode=batch_transform`` (sagelab.transform)."""

    input: Optional[str] = None
    output: str = MISSING
    window: int = checked(4096, positive)  # input lines length-sorted and answered together; one commit each
    resume: bool = True  # a re-run of an interrupted transform continues after its last commit


@dataclass(kw_only=True)
class CaptureConfig:
    enabled: bool = False
    dir: str = MISSING
    sampling_percentage: float = checked(100.0, percentage)
    max_file_records: int = checked(1000, positive)
    trust_time_header: bool = False  # X-Sagelab-Inference-Time dates a request (replays, simulations)


@dataclass(kw_only=True)
class ServeConfig:
    """``mode=serve``: the endpoint (sagelab.serving)."""

    host: str = "127.0.0.1"
    port: int = checked(8080, port_number)
    workers: int = checked(1, positive)
    max_batch_size: int = checked(32, positive)
    max_batch_delay_ms: float = checked(10.0, non_negative)
    sub_batch_size: Optional[int] = checked(None, positive)
    max_payload_mb: float = checked(6.0, positive)
    drain_timeout_s: int = checked(30, positive)
    endpoint_name: str = MISSING
    variant_name: str = "AllTraffic"
    capture: CaptureConfig = field(default_factory=CaptureConfig)


@dataclass(kw_only=True)
class DiagnoseConfig:
    """``mode=diagnose``: a binary classifier on its evaluation set (sagelab.diagnose); conf/config.yaml says
    what each key means."""

    target_tpr: float = checked(0.9, fraction)
    max_fpr: float = checked(0.01, fraction)
    thresholds: list[float] = checked([], each(fraction))
    bands: dict[str, Any] = checked({"block": "max_fpr", "investigate": "target_tpr"}, band_thresholds)
    prevalence: Optional[float] = checked(None, open_fraction)
    bootstrap: int = checked(1000, positive)
    bootstrap_seed: int = 0
    confidence: float = checked(0.95, open_fraction)
    calibration_bins: int = checked(10, positive)
    auc_high: float = checked(0.99, fraction)
    auc_low: float = checked(0.8, fraction)
    middle: list[float] = checked([0.3, 0.7], score_range)
    middle_share: float = checked(0.2, fraction)
    near_duplicate_threshold: float = checked(0.9, fraction)
    near_duplicate_max_train: int = checked(100_000, positive)
    token_min_count: int = checked(5, positive)
    shortcut_strength: float = checked(0.8, fraction)
    balance_tolerance: float = checked(0.1, fraction)
    top_k: int = checked(20, positive)
    attribution_examples: int = checked(100, non_negative)
    attribution_steps: int = checked(16, positive)
    attribution_shown: int = checked(8, non_negative)
    permutation_repeats: int = checked(5, non_negative)


@dataclass(kw_only=True)
class StrategyConfig:
    """How training is spread over processes; ``_target_`` builds the Lightning strategy (sagelab.strategies)."""

    _target_: str = MISSING
    name: str = MISSING
    processes: int = checked(1, positive)
    num_nodes: int = checked(1, positive)
    backend: str = "auto"  # auto: nccl on GPUs, gloo on CPUs
    # the sharded strategy keeps its own parameter dtype; a strategy that writes sharded checkpoints itself
    # sets atomic_checkpoints false
    mixed_precision_plugin: bool = True
    atomic_checkpoints: bool = True


@dataclass(kw_only=True)
class InstanceConfig:
    name: str = MISSING
    accelerator: str = checked("cpu", one_of("cpu", "gpu"))
    devices: int = checked(1, positive)
    threads: Any = checked("auto", thread_count)  # auto: the cores this process may use (affinity / cgroup quota); or a number
    nodes: int = checked(1, positive)
    gpu_model: Optional[str] = None
    price_per_hour: float = checked(0.0, non_negative)
    spot: bool = False
    max_run_s: Optional[float] = checked(None, positive)


@dataclass(kw_only=True)
class LoggerConfig:
    tracking_uri: str = MISSING
    artifact_location: str = MISSING
    experiment_name: str = MISSING
    run_name: Optional[str] = None
    parent_run_id: Optional[str] = None
    register_as: Optional[str] = None  # register a training run's MLflow model under this name
    log_every_n_steps: int = 10


@dataclass(kw_only=True)
class HpoConfig:
    """A study (``hpo=<algorithm>``); ``hpo=none`` sets only the name. Checked further by sagelab.hpo.spec."""

    name: str = "none"
    metrics: list[str] = field(default_factory=list)
    modes: list[str] = field(default_factory=list)
    max_trials: Optional[int] = checked(None, positive)
    max_wallclock_s: Optional[float] = checked(None, positive)
    max_cost_usd: Optional[float] = checked(None, positive)
    max_failures: Optional[int] = checked(None, non_negative)
    trial_timeout_s: Optional[float] = checked(None, positive)
    n_workers: int = checked(1, positive)
    max_resource: Optional[int] = checked(None, positive)
    grace_period: int = checked(1, positive)
    reduction_factor: float = 3.0
    seed: Optional[int] = None
    study_name: Optional[str] = None
    dir: Optional[str] = None
    experiment_dir: Optional[str] = None
    trial_overrides: list[str] = field(default_factory=list)
    latency: dict[str, int] = field(default_factory=dict)
    keep_checkpoints: bool = False
    storage: Optional[str] = None               # an RDB URL shared by every worker of an Optuna study
    heartbeat_s: int = checked(10, positive)    # shared study: each worker's heartbeat for its running trial
    grace_s: int = checked(30, positive)        # shared study: a trial whose heartbeat is older is failed and retried
    command: Optional[list[str]] = None        # the trial program (tests: a synthetic stand-in)
    base_overrides: Optional[list[str]] = None  # the study's own overrides, when not from Hydra's record
    backend: str = checked("auto", one_of("auto", "syne_tune", "optuna", "ray"))  # auto: the algorithm's library
    ray_address: Optional[str] = None  # hpo.backend=ray: <head>:6379 of a running cluster; null = a local Ray
    evaluate_default: bool = True      # the composed config's own values are the study's first trial
    points_to_evaluate: list[Any] = field(default_factory=list)  # known-good {param: value} points, after it
    warm_start: Optional[str] = None   # an earlier study (name in hpo.dir, or its MLflow parent run id) to seed from
    resource: str = checked("epochs", one_of("epochs", "steps"))  # what one round (ASHA's rung unit) is
    round_steps: Optional[int] = checked(None, positive)  # resource=steps: optimizer steps per round
    reeval_seeds: list[int] = field(default_factory=list)  # after the study: top-k + default again on these seeds
    reeval_top_k: int = checked(3, positive)  # how many of the best distinct configurations are re-evaluated


@dataclass(kw_only=True)
class SearchSpaceConfig:
    name: str = "none"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class TaskBlock:
    """The keys every ``task:`` block has; a family's ``config_class`` extends it with its own."""

    _target_: str = MISSING  # the family's Task class
    name: str = MISSING      # also the MLflow experiment and the checkpoint folder
    metric: str = MISSING    # the headline metric as logged, e.g. val/accuracy: HPO and compare sort by it
    metric_mode: str = checked("max", one_of("max", "min"))
    check_paths: list[str] = field(default_factory=list)    # keys whose values must be existing paths
    run_only_keys: list[str] = field(default_factory=list)  # keys left out of the checkpoint folder's hash


@dataclass(kw_only=True)
class SagelabConfig:
    mode: str = MISSING
    seed: int = 42
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    diagnose: DiagnoseConfig = field(default_factory=DiagnoseConfig)
    callbacks: dict[str, Any] = field(default_factory=dict)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    instance: InstanceConfig = field(default_factory=InstanceConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    hpo: HpoConfig = field(default_factory=HpoConfig)
    search_space: SearchSpaceConfig = field(default_factory=SearchSpaceConfig)
    task: Any = MISSING   # each family's block schema is its Task.config_class, checked by the CLI
    model: Any = MISSING  # transformer or graph network; the task names the kinds it takes
    output_dir: Optional[str] = None
    # settings of the stand-in trial program (python -m sagelab.hpo.synthetic) that HPO tests run as trials
    synthetic: dict[str, Any] = field(default_factory=dict)


# groups whose option (``strategy=ddp``) is a file, not a value; their keys (``strategy.processes``) are typed
GROUPS = ("task", "model", "strategy", "instance", "logger", "hpo", "search_space", "experiment")


def register() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="sagelab_schema", node=SagelabConfig)


# -- checks ----------------------------------------------------------------------------------------------------
def schema_error(err: OmegaConfBaseException, prefix: str = "") -> ConfigError:
    key = f"{prefix}{err.full_key}" if getattr(err, "full_key", None) else prefix.rstrip(".") or "config"
    text = str(err).splitlines()[0].strip()
    if "not in struct" in text or "Key '" in text and "not in" in text:
        text = f"no such key{' here' if prefix else ''} (a typo?)."
    elif "could not be converted" in text or "Value '" in text:
        value = getattr(err, "value", None)
        kind = getattr(getattr(err, "object_type", None), "__name__", None)
        text = f"wrong type: {value!r} is not {_expected_type(err) or kind or 'accepted here'}."
    return ConfigError(key, text)


def _expected_type(err: OmegaConfBaseException) -> str | None:
    text = str(err)
    for name, phrase in (("Integer", "a whole number"), ("Float", "a number"), ("Boolean", "true or false"),
                         ("String", "a string")):
        if f"to {name}" in text:
            return phrase
    return None


def typed(block: Any, schema: type, prefix: str = "") -> DictConfig:
    """``block`` merged into ``schema`` (unknown keys and wrong types refused, naming ``prefix + key``)."""
    try:
        return OmegaConf.merge(OmegaConf.structured(schema), block)
    except OmegaConfBaseException as err:
        raise schema_error(err, prefix) from None


def check_values(cfg: Any, schema: type = SagelabConfig, prefix: str = "") -> None:
    """Run the value checks declared beside each field of ``schema`` (recursively) on ``cfg``."""
    for spec in fields(schema):
        if spec.name not in cfg:  # absent, or still MISSING
            continue
        try:
            value = cfg[spec.name]
        except OmegaConfBaseException:  # an interpolation that resolves only inside Hydra's job (${hydra:...})
            continue
        key = f"{prefix}{spec.name}"
        nested = spec.default_factory if spec.default_factory is not NO_FACTORY else None  # type: ignore[misc]
        if nested is not None and is_dataclass(nested):
            check_values(value, nested, f"{key}.")
            continue
        for check in spec.metadata.get("checks", ()):
            if isinstance(value, float) and math.isnan(value):
                raise ConfigError(key, "is nan; give a number.")
            problem = check(value)
            if problem:
                raise ConfigError(key, problem)


register()
