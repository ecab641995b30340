"""A stand-in trial program with a known objective, for testing studies without training.

``hpo.command=[python,-m,sagelab.hpo.synthetic]`` makes every trial run this
instead of ``run.py``. It takes the same overrides a real trial gets, reads
``optim.lr``, ``optim.batch_size``, ``optim.warmup_ratio``, ``model`` and
``instance`` (prices and threads from ``conf/instance/<name>.yaml``), and reports
one round per epoch through the same :class:`~sagelab.hpo.report.TrialReporter`
as the Lightning callback, so scheduling, pruning, resume, the Pareto front and
the best-config writer are exercised exactly as with real trials -- in
milliseconds. Like the real runner it rejects a negative ``optim.*`` value with
a config error (exit status 2). ``+synthetic.crash_trials=[1,4]`` (inherited by
every trial, like any override of the study's command) makes the trials with
those ids crash with a traceback before their first report, whatever
configuration they drew and in whatever order they were scheduled: that is how
tests make trials fail deterministically. ``+synthetic.hang_trials=[2]`` makes
trials hang (sleep forever) before their first report, for ``hpo.trial_timeout_s``; the environment variable
``SAGELAB_SYNTHETIC_HANG`` (comma-separated ids) does the same without changing the study's command, so a test
can stop a study at a chosen run and resume it with the same command.
``+synthetic.gate=<file>`` holds every trial before its first report until that file exists: a test
releases them when it has done what must happen "mid-trial" (e.g. kill a shared study's worker).
``+synthetic.seed_noise=<a>`` adds a deterministic "training noise" in [-a, a] to the error, drawn from the run's
``seed`` and its configuration, so re-evaluating a configuration on other seeds (``hpo.reeval_seeds``) gives
other values, as real training does.
``+synthetic.mlflow=true`` gives each trial an MLflow run as a real trial has one (nested under the study's
parent, tagged with study and trial, params, ``config.yaml``, a metric per epoch, FINISHED at the end).

Simulated training time (not the real sleep) drives ``train_time_s`` and
``cost_usd``, so results are deterministic.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from sagelab.config import PROJECT_ROOT

MODELS = {"minilm": (0.0, 4.0, 1.0), "bert_tiny": (0.12, 0.6, 0.15), "bert_large_wwm": (-0.05, 30.0, 8.0)}


def parse(argv: list[str]) -> dict[str, Any]:
    out = {}
    for token in argv:
        if "=" not in token:
            continue
        key, value = token.split("=", 1)
        try:
            out[key.lstrip("+~")] = yaml.safe_load(value)
        except yaml.YAMLError:
            out[key.lstrip("+~")] = value
    return out


def chosen(args: dict[str, Any], key: str, trial: int | str) -> bool:
    """Whether ``trial`` is among the ids an option like ``+synthetic.crash_trials=[1,4]`` lists."""
    ids = args.get(key) or []
    return str(trial) in [str(i) for i in (ids if isinstance(ids, list) else [ids])]


def error_at(lr: float, batch_size: int, warmup: float, model: str, epoch: int) -> float:
    """A smooth bowl in log(lr) with its minimum near 3e-5, better with more epochs."""
    offset = MODELS.get(model, MODELS["minilm"])[0]
    bowl = 0.06 * (math.log10(lr) + 4.5) ** 2 + 0.15 * (warmup - 0.1) ** 2 + 0.0004 * abs(batch_size - 24)
    return 0.12 + offset + bowl + 0.25 / epoch


def noise(args: dict[str, Any]) -> float:
    """``synthetic.seed_noise`` x a uniform draw in [-1, 1] fixed by the seed and the configuration."""
    import random

    amplitude = float(args.get("synthetic.seed_noise") or 0.0)
    if not amplitude:
        return 0.0
    key = "|".join(str(args.get(k)) for k in ("seed", "optim.lr", "optim.batch_size", "optim.warmup_ratio", "model"))
    return amplitude * (2.0 * random.Random(key).random() - 1.0)


def main(argv: list[str] | None = None) -> int:
    from sagelab.hpo.report import TrialReporter

    args = parse(sys.argv[1:] if argv is None else argv)
    for key, value in args.items():
        if key.startswith("optim.") and isinstance(value, (int, float)) and value < 0:
            print(f"sagelab: bad config: {key}: must be zero or more, got {value}.", file=sys.stderr)
            return 2
    trial = str(args["callbacks.hpo.trial"])  # a number, or a re-evaluation run's id
    if chosen(args, "synthetic.crash_trials", trial):
        raise RuntimeError(f"trial {trial} crashes on purpose (synthetic.crash_trials="
                           f"{args['synthetic.crash_trials']})")
    hang = os.environ.get("SAGELAB_SYNTHETIC_HANG", "").split(",")
    while chosen(args, "synthetic.hang_trials", trial) or trial in hang:  # only a timeout or a kill stops it
        time.sleep(3600)
    instance_file = PROJECT_ROOT / "conf" / "instance" / f"{args.get('instance', 'local_cpu2')}.yaml"
    instance = yaml.safe_load(instance_file.read_text())
    model = str(args.get("model", "minilm"))
    _, latency_base, work = MODELS.get(model, MODELS["minilm"])
    threads = instance.get("threads", 1)
    threads = 2.0 if threads == "auto" else float(threads)  # a profile's nominal size, not this machine's
    epochs = int(args.get("trainer.max_epochs", 1))
    if "trainer.max_steps" in args:  # hpo.resource=steps: a round every val_check_interval batches
        epochs = int(args["trainer.max_steps"]) * int(args.get("trainer.accumulate_grad_batches", 1)) \
            // int(args["trainer.val_check_interval"])
    batch_size = int(args.get("optim.batch_size", 32))
    reporter = TrialReporter(args["callbacks.hpo.spec"], trial, instance["price_per_hour"])
    run = MlflowRun(reporter, args) if args.get("synthetic.mlflow") else None
    gate = args.get("synthetic.gate")
    while gate and not Path(str(gate)).exists():  # released by the test, whatever happens meanwhile
        time.sleep(0.05)
    epoch_s = float(args.get("synthetic.epoch_s", 0.02))
    simulated = 0.0
    for epoch in range(1, epochs + 1):
        time.sleep(epoch_s)
        simulated += 10.0 * work * (1.0 + 16.0 / batch_size) / threads**0.8
        error = error_at(float(args.get("optim.lr", 5e-5)), batch_size,
                         float(args.get("optim.warmup_ratio", 0.1)), model, epoch) + noise(args)
        metric = 1.0 - error if reporter.spec.task_mode == "max" else error
        latency = latency_base / threads**0.7
        if run is not None:
            run.log_metrics({reporter.spec.task_metric: metric, "train_time_s": simulated}, epoch)
        if reporter.report(metric, latency, {reporter.spec.task_metric: metric}, train_time_s=simulated):
            break
    if run is not None:
        run.finish()
    return 0


class MlflowRun:
    """The trial's MLflow run, made as :class:`sagelab.tracking.RunRecord` makes a real trial's (same store,
    experiment, nesting tag and study tags), without composing a config."""

    def __init__(self, reporter: Any, args: dict[str, Any]) -> None:
        from mlflow import MlflowClient
        from omegaconf import OmegaConf

        from sagelab.tracking import connect

        spec = reporter.spec
        cfg = OmegaConf.create({"logger": {"tracking_uri": spec.tracking_uri, "experiment_name": spec.experiment_name,
                                           "artifact_location": spec.artifact_location}})
        experiment = connect(cfg)
        self.client = MlflowClient()
        tags = {"mlflow.runName": str(args.get("logger.run_name", f"trial-{reporter.trial}")),
                "sagelab.hpo.study": spec.name, "sagelab.hpo.trial": reporter.trial, "mode": "train"}
        if args.get("logger.parent_run_id"):
            tags["mlflow.parentRunId"] = str(args["logger.parent_run_id"])
        self.run_id = self.client.create_run(experiment, tags=tags).info.run_id
        params = {k: str(v) for k, v in args.items() if k.startswith(("optim.", "model", "instance"))}
        for key, value in params.items():
            self.client.log_param(self.run_id, key, value)
        self.client.log_text(self.run_id, yaml.safe_dump(args, sort_keys=True), "config.yaml")
        reporter.set_run_id(self.run_id)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.client.log_metric(self.run_id, key, float(value), step=step)

    def finish(self) -> None:
        self.client.set_terminated(self.run_id, "FINISHED")


if __name__ == "__main__":
    sys.exit(main())
