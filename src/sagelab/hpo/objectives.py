"""Objectives by name, and how a trial measures them.

Built-in objectives (all minimised):

* ``error`` -- the task's validation error: ``1 - metric`` for a task whose
  headline metric is maximised (``val/mcc``, ``val/f1``, ``val/pearson``), the
  metric itself for a minimised one;
* ``latency_ms`` -- inference latency per example: the module's own
  ``predict_step`` on the first validation batch, measured after warm-up in the
  trial's own process (so with the instance's thread count);
* ``cost_usd`` -- training wall time x the instance's ``price_per_hour``;
* ``train_time_s`` -- training wall time.

Any other logged metric (``val/f1``) is accepted with an explicit mode. The
schedulers only ever see minimised values: a ``max`` objective is reported
negated under the key ``neg_<name>``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from omegaconf import DictConfig, OmegaConf

from sagelab.config import ConfigError

BUILTIN = {"error": "min", "latency_ms": "min", "cost_usd": "min", "train_time_s": "min"}
MODES = ("min", "max")


@dataclass(frozen=True)
class Objective:
    name: str
    mode: str = "min"

    @property
    def key(self) -> str:
        """The key of the minimised value reported to the scheduler."""
        return self.name if self.mode == "min" else f"neg_{self.name}"

    def minimised(self, value: float) -> float:
        return float(value) if self.mode == "min" else -float(value)

    def natural(self, minimised: float) -> float:
        return float(minimised) if self.mode == "min" else -float(minimised)


def parse_objectives(hpo: DictConfig | Mapping, where: str = "hpo") -> list[Objective]:
    """Read ``hpo.metrics`` (and ``hpo.modes``), checking names and modes."""
    metrics = hpo.get("metrics")
    if isinstance(metrics, str):
        metrics = [metrics]
    if isinstance(metrics, DictConfig) or metrics is None:
        raise ConfigError(f"{where}.metrics", f"must be a list of objective names, got {metrics!r}.")
    metrics = list(OmegaConf.to_container(metrics) if not isinstance(metrics, list) else metrics)
    if not metrics:
        raise ConfigError(f"{where}.metrics", "needs at least one objective, e.g. [error].")
    modes = hpo.get("modes")
    modes = list(modes) if modes is not None else [BUILTIN.get(str(m), "") for m in metrics]
    if len(modes) != len(metrics):
        raise ConfigError(f"{where}.modes", f"has {len(modes)} entries for {len(metrics)} metrics {metrics}.")
    out = []
    for i, (name, mode) in enumerate(zip(metrics, modes)):
        name = str(name)
        if mode not in MODES:
            raise ConfigError(
                f"{where}.modes[{i}]",
                f"is {mode!r} for '{name}'; allowed values are min, max "
                f"(built-in objectives: {', '.join(BUILTIN)}; other metrics need a mode).",
            )
        if name in BUILTIN and mode != BUILTIN[name]:
            raise ConfigError(f"{where}.modes[{i}]", f"'{name}' is always minimised, got mode {mode!r}.")
        if name not in BUILTIN and "/" not in name:
            raise ConfigError(
                f"{where}.metrics[{i}]",
                f"'{name}' is not a built-in objective ({', '.join(BUILTIN)}) nor a logged metric like val/f1.",
            )
        out.append(Objective(name, mode))
    if len({o.name for o in out}) != len(out):
        raise ConfigError(f"{where}.metrics", f"lists an objective twice: {metrics}.")
    return out


def error_from_metric(value: float, task_mode: str) -> float:
    """Validation error of a headline metric: ``1 - metric`` when it is maximised."""
    return 1.0 - float(value) if task_mode == "max" else float(value)


def trial_metrics(
    task_metric_value: float,
    task_mode: str,
    train_time_s: float,
    price_per_hour: float | None,
    latency_ms: float | None,
    logged: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """All built-in objective values of one trial at one point, plus any logged ``val/*`` metrics."""
    out = {k: float(v) for k, v in (logged or {}).items()}
    out["error"] = error_from_metric(task_metric_value, task_mode)
    out["train_time_s"] = float(train_time_s)
    out["cost_usd"] = float(train_time_s) * float(price_per_hour or 0.0) / 3600.0
    if latency_ms is not None:
        out["latency_ms"] = float(latency_ms)
    return out


def scheduler_values(metrics: Mapping[str, float], objectives: Sequence[Objective]) -> dict[str, float]:
    """The minimised values the scheduler sees, by :attr:`Objective.key`; missing ones raise KeyError."""
    out = {}
    for obj in objectives:
        if obj.name not in metrics:
            raise KeyError(f"objective '{obj.name}' was not measured (have: {', '.join(sorted(metrics))})")
        out[obj.key] = obj.minimised(metrics[obj.name])
    return out


def measure_latency_ms(forward: Callable[[], Any], n_examples: int, warmup: int = 2, repeats: int = 10) -> float:
    """Milliseconds per example of ``forward()``: the fastest of ``repeats`` timed calls after ``warmup`` calls.

    The minimum, as ``timeit`` recommends: on a shared machine slower repeats measure the neighbours.
    """
    if n_examples <= 0:
        raise ValueError("n_examples must be positive")
    for _ in range(warmup):
        forward()
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        forward()
        times.append(time.perf_counter() - start)
    return 1000.0 * min(times) / n_examples
