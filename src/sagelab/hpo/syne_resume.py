"""How a Syne Tune session continues the study the earlier sessions left: replay, then re-submit what was lost.

A new session builds a fresh scheduler with the study's seed and walks every earlier trial in id order, making
the calls the first session's Tuner made for it: ``suggest()`` (the suggestion is dropped, the recorded
config is what ran; the call only moves the random stream on), ``on_trial_add``, each recorded round, and the
trial's end. After that the scheduler's random stream (its own generator and numpy's global one, which MO-ASHA
and random search draw from) stands where an uninterrupted study's would, with the same rungs filled.

A trial that was running when a session died (``interrupted``) has drawn its config but not finished. Its
config is handed to the Tuner again, first, as a new trial (``retry_of`` the lost one) by :class:`Capped`,
the way Optuna's side re-enqueues a lost trial; only then does the scheduler draw new configs. So, with one
worker, a resumed study runs the same configs in the same order as one that was never interrupted. (With
several workers the draws interleave with results as they arrive, which no replay can reproduce; BORE's
suggestions also depend on those results.)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from sagelab.hpo.records import lost_trials


class Lost(NamedTuple):
    """An interrupted trial to run again."""

    trial_id: int
    config: dict[str, Any]


def replay(scheduler: Any, records: list[dict[str, Any]]) -> list[Lost]:
    """Feed the earlier sessions' trials to a fresh scheduler as their Tuner did; returns the lost trials."""
    from syne_tune.backend.trial_status import Trial
    from syne_tune.optimizer.scheduler import SchedulerDecision

    from sagelab.hpo.report import syne_tune_payload

    lost_ids = {int(r["trial_id"]) for r in lost_trials(records)}
    lost = []
    for record in records:
        trial_id, status = int(record["trial_id"]), record.get("status")
        if record.get("retry_of") is None:  # a retry's config came from the queue below, not from the stream
            scheduler.suggest()
        if status == "interrupted":  # its on_trial_add is made again for its retry (now, or by the Tuner)
            if trial_id in lost_ids:
                lost.append(Lost(trial_id, dict(record["config"])))
            continue
        trial = Trial(trial_id=trial_id, config=dict(record["config"]), creation_time=datetime.now())
        scheduler.on_trial_add(trial)
        history = (record.get("result") or {}).get("history") or []
        removed = False
        for entry in history:
            if scheduler.on_trial_result(trial, syne_tune_payload(entry)) == SchedulerDecision.STOP:
                scheduler.on_trial_remove(trial)
                removed = True
                break
        if not removed:
            if history and status == "completed":
                scheduler.on_trial_complete(trial, syne_tune_payload(history[-1]))
            else:
                scheduler.on_trial_error(trial)
    return lost


def capped(inner: Any, max_new: int | None, lost: list[Lost]) -> Any:
    """``inner``, suggesting the ``lost`` configs first and at most ``max_new`` trials in all.

    Also counts the session's failed trials (``failed``) and stops suggesting once ``give_up()`` says so;
    ``retry_of`` maps a new trial id to the lost trial it runs again.
    """
    from syne_tune.optimizer.scheduler import TrialScheduler, TrialSuggestion

    class Capped(TrialScheduler):
        def __init__(self) -> None:
            super().__init__(random_seed=inner.random_seed)
            self.inner, self.started, self.failed = inner, 0, 0
            self.queue = list(lost)
            self.retry_of: dict[int, int] = {}
            self._pending: int | None = None
            self.give_up = lambda: False

        def suggest(self) -> Any:
            if (max_new is not None and self.started >= max_new) or self.give_up():
                return None  # the Tuner waits for running trials, then ends
            if self.queue:
                again = self.queue.pop(0)
                self._pending = again.trial_id
                suggestion = TrialSuggestion.start_suggestion(dict(again.config))
            else:
                suggestion = self.inner.suggest()
            if suggestion is not None:
                self.started += 1
            return suggestion

        def on_trial_add(self, trial: Any) -> None:
            if self._pending is not None:
                self.retry_of[trial.trial_id], self._pending = self._pending, None
            self.inner.on_trial_add(trial)

        def on_trial_error(self, trial: Any) -> None:
            self.failed += 1
            self.inner.on_trial_error(trial)

        def on_trial_result(self, trial: Any, result: dict[str, Any]) -> str:
            return self.inner.on_trial_result(trial, result)

        def on_trial_complete(self, trial: Any, result: dict[str, Any]) -> None:
            self.inner.on_trial_complete(trial, result)

        def on_trial_remove(self, trial: Any) -> None:
            self.inner.on_trial_remove(trial)

        def metric_names(self) -> list[str]:
            return self.inner.metric_names()

        def metric_mode(self) -> str:
            return self.inner.metric_mode()

        def metadata(self) -> dict[str, Any]:
            return self.inner.metadata()

    return Capped()
