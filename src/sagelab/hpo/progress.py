"""One line per finished trial: what it gave, how many are done, what is left of the budget, and an ETA.

Both backends record a trial's end (completed, stopped by the scheduler, pruned or failed) through
:meth:`Progress.end_trial`. The ETA is this session's pace (finished trials per second, so parallel workers
count) applied to the trials left, capped by the wall-clock budget left; with only a cost budget, the pace
of spending applied to what is left of it.
"""

from __future__ import annotations

import sys
import threading
import time
from datetime import datetime, timedelta
from typing import Any

from sagelab.hpo.records import FINISHED, Budget, finish_trial, read_json, trial_cost
from sagelab.hpo.spec import StudySpec


def duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class Progress:
    def __init__(self, spec: StudySpec, budget: Budget, records: list[dict[str, Any]]) -> None:
        """``records``: the earlier sessions' trials (:func:`~sagelab.hpo.records.load_trials`)."""
        self.spec, self.budget = spec, budget
        self.finished_before = sum(1 for r in records if r.get("status") in FINISHED)
        self.started = time.monotonic()
        self.done = 0
        self.cost = 0.0  # this session's finished trials
        self.lock = threading.Lock()  # Optuna reports from its worker threads

    def end_trial(self, trial_id: int | str, **fields: Any) -> str:
        """Record a trial's end (:func:`~sagelab.hpo.records.finish_trial`) and print (and return) its line."""
        finish_trial(self.spec.trial_dir(trial_id), self.spec.keep_checkpoints, **fields)
        return self.trial_ended(trial_id, fields["status"], fields.get("reason"))

    def trial_ended(self, trial_id: int | str, status: str, reason: str | None = None) -> str:
        """Print (and return) the line for one trial that has just finished with ``status`` (and ``reason``)."""
        result = read_json(self.spec.trial_dir(trial_id) / "result.json") or {}
        detail = f" ({reason})" if status == "failed" and reason else self._value(result)
        with self.lock:
            self.done += 1
            self.cost += trial_cost({"result": result})
            line = f"sagelab hpo: trial {trial_id} {status}{detail} | {self._standing()}"
        print(line, file=sys.stdout, flush=True)
        return line

    def _value(self, result: dict[str, Any]) -> str:
        history = result.get("history") or []
        first = self.spec.objective_list()[0]
        if not history or first.name not in history[-1]:
            return ""
        return f" ({first.name} {history[-1][first.name]:.4g}, {len(history)} round{'s' * (len(history) > 1)})"

    def _standing(self) -> str:
        budget, elapsed = self.budget, time.monotonic() - self.started
        total = self.finished_before + self.done
        parts = [f"{total}/{self.spec.max_trials} trials finished" if self.spec.max_trials else f"{total} finished"]
        etas = []
        if budget.trials_left is not None:
            trials_left = max(0, budget.trials_left - self.done)
            parts.append(f"{trials_left} to go")
            etas.append(elapsed / self.done * trials_left)
        if budget.wall_left is not None:
            wall_left = max(0.0, budget.wall_left - elapsed)
            parts.append(f"{duration(wall_left)} of wall-clock left")
            etas.append(wall_left)
        if budget.max_cost_usd is not None:
            cost_left = max(0.0, budget.max_cost_usd - budget.cost_before - self.cost)
            parts.append(f"${cost_left:.2f} of cost left")
            if not etas and self.cost > 0:
                etas.append(elapsed / self.cost * cost_left)
        if etas:
            eta = min(etas)
            finish = (datetime.now() + timedelta(seconds=eta)).strftime("%H:%M")
            parts.append(f"ETA {finish} (in {duration(eta)})")
        return ", ".join(parts)
