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
trials hang (sleep forever) before their first report, for ``hpo.trial_timeout_s``.

Simulated training time (not the real sleep) drives ``train_time_s`` and
``cost_usd``, so results are deterministic.
"""

from __future__ import annotations

import math
import sys
import time
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


def chosen(args: dict[str, Any], key: str, trial: int) -> bool:
    """Whether ``trial`` is among the ids an option like ``+synthetic.crash_trials=[1,4]`` lists."""
    ids = args.get(key) or []
    return trial in (ids if isinstance(ids, list) else [ids])


def error_at(lr: float, batch_size: int, warmup: float, model: str, epoch: int) -> float:
    """A smooth bowl in log(lr) with its minimum near 3e-5, better with more epochs."""
    offset = MODELS.get(model, MODELS["minilm"])[0]
    bowl = 0.06 * (math.log10(lr) + 4.5) ** 2 + 0.15 * (warmup - 0.1) ** 2 + 0.0004 * abs(batch_size - 24)
    return 0.12 + offset + bowl + 0.25 / epoch


def main(argv: list[str] | None = None) -> int:
    from sagelab.hpo.report import TrialReporter

    args = parse(sys.argv[1:] if argv is None else argv)
    for key, value in args.items():
        if key.startswith("optim.") and isinstance(value, (int, float)) and value < 0:
            print(f"sagelab: bad config: {key}: must be zero or more, got {value}.", file=sys.stderr)
            return 2
    trial = int(args["callbacks.hpo.trial"])
    if chosen(args, "synthetic.crash_trials", trial):
        raise RuntimeError(f"trial {trial} crashes on purpose (synthetic.crash_trials="
                           f"{args['synthetic.crash_trials']})")
    while chosen(args, "synthetic.hang_trials", trial):  # a trial that never ends: only a timeout stops it
        time.sleep(3600)
    instance_file = PROJECT_ROOT / "conf" / "instance" / f"{args.get('instance', 'local_cpu2')}.yaml"
    instance = yaml.safe_load(instance_file.read_text())
    model = str(args.get("model", "minilm"))
    _, latency_base, work = MODELS.get(model, MODELS["minilm"])
    threads = instance.get("threads", 1)
    threads = 2.0 if threads == "auto" else float(threads)  # a profile's nominal size, not this machine's
    epochs = int(args.get("trainer.max_epochs", 1))
    batch_size = int(args.get("optim.batch_size", 32))
    reporter = TrialReporter(args["callbacks.hpo.spec"], trial, instance["price_per_hour"])
    epoch_s = float(args.get("synthetic.epoch_s", 0.02))
    simulated = 0.0
    for epoch in range(1, epochs + 1):
        time.sleep(epoch_s)
        simulated += 10.0 * work * (1.0 + 16.0 / batch_size) / threads**0.8
        error = error_at(float(args.get("optim.lr", 5e-5)), batch_size,
                         float(args.get("optim.warmup_ratio", 0.1)), model, epoch)
        metric = 1.0 - error if reporter.spec.task_mode == "max" else error
        latency = latency_base / threads**0.7
        if reporter.report(metric, latency, {reporter.spec.task_metric: metric}, train_time_s=simulated):
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
