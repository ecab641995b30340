"""The study's side of a Ray Tune run, in the driver: where configurations come from and what is recorded.

* :class:`StudySearcher` -- a Ray ``Searcher`` drawing each hyperparameter from its Ray domain
  (:meth:`SearchSpace.ray`) with the study's seed, as Ray's random search does, numbering trials after the
  earlier sessions' ones, continuing the study's random stream and handing out the configurations a dead
  session lost first (``retry_of``);
* :class:`Journal` -- a Ray Tune ``Callback`` that keeps ``trials/<id>/trial.json`` in step with Ray (config,
  node, status, reason), prints the study's progress line per finished trial and ticks the session clock;
* :class:`AtBudget` -- a Ray ``Stopper`` ending the session when the failures pass ``hpo.max_failures`` or the
  cost budget is spent (the wall-clock budget is Tune's ``time_budget_s``, the trial budget ``num_samples``).

Tune pickles its search algorithm, callbacks and stoppers into its experiment state. These classes live at
module level (pickled by reference) and the journal leaves out its live parts: the study never restores a
Ray experiment, it resumes from its own records (:mod:`sagelab.hpo.records`).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from ray.tune import Callback, Stopper
from ray.tune.search import Searcher

from sagelab.hpo.progress import Progress
from sagelab.hpo.ray_trial import EXIT_KEY, RETRY_KEY, TRIAL_KEY, sampled
from sagelab.hpo.records import Budget, StudyState, read_json, tail, update_trial
from sagelab.hpo.space import plain
from sagelab.hpo.spec import StudySpec


class StudySearcher(Searcher):
    """Random configurations from the study's space and seed, carrying the study's trial ids."""

    def __init__(self, spec: StudySpec, records: list[dict[str, Any]], first_id: int, lost: list[dict[str, Any]],
                 max_new: int | None) -> None:
        """``records``: the earlier sessions' trials; as many draws as they made are repeated and dropped, so
        the study's random stream goes on where it stood instead of drawing the same configurations again.
        The study's first configurations (:meth:`StudySpec.first_configs`: the default one first) are its first
        suggestions; the ones earlier sessions already ran are not suggested again and drew nothing."""
        super().__init__()
        space = spec.search_space()
        self.domains = space.ray()  # a conditional lr: every branch drawn, the chosen one applied (as Syne Tune)
        self.rng = np.random.RandomState(spec.seed % 2**32)
        made = sum(1 for r in records if r.get("retry_of") is None)
        first = [space.to_backend(p, fill=True) for p in spec.first_configs()]
        self.points = first[made:]
        for _ in range(max(0, made - len(first))):
            self._draw()
        self.queue = [(dict(r["config"]), int(r["trial_id"])) for r in lost if r.get("config")]
        self.next_id, self.started, self.max_new = first_id, 0, max_new

    def _draw(self) -> dict[str, Any]:
        return {n: plain(d.sample(random_state=self.rng)) for n, d in self.domains.items()}

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True  # the space is the study's; Tune's (empty) param_space adds nothing

    def suggest(self, trial_id: str) -> dict[str, Any] | str:
        if self.max_new is not None and self.started >= self.max_new:
            return Searcher.FINISHED
        if self.queue:
            config, retry_of = self.queue.pop(0)
        elif self.points:
            config, retry_of = self.points.pop(0), None
        else:
            config, retry_of = self._draw(), None
        config.update({TRIAL_KEY: self.next_id, RETRY_KEY: retry_of})
        self.next_id += 1
        self.started += 1
        return config

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass  # random sampling learns nothing from results

    def save(self, checkpoint_path: str) -> None:
        pass  # a study resumes from its own records, never from Tune's experiment state

    def restore(self, checkpoint_path: str) -> None:
        pass


class Journal(Callback):
    """Keeps the study's trial records in step with Ray Tune (runs in the driver, on Tune's event loop)."""

    def __init__(self, spec: StudySpec, state: StudyState, session: int, budget: Budget, progress: Progress) -> None:
        self.spec, self.state, self.session, self.budget, self.progress = spec, state, session, budget, progress
        self.started = time.monotonic()
        self.last_tick = 0.0
        self.failed: set[int] = set()
        self.cost: dict[int, float] = {}
        self.placed: set[int] = set()
        self.new_trials = 0

    def __getstate__(self) -> dict[str, Any]:
        return {}  # see the module's docstring: never restored

    def gave_up(self) -> bool:
        return self.budget.too_many_failures(len(self.failed))

    def spent(self) -> bool:
        """Too many failures, or the cost budget is spent."""
        cost = self.budget.cost_before + sum(self.cost.values())
        return self.gave_up() or (self.budget.max_cost_usd is not None and cost >= self.budget.max_cost_usd)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.new_trials += 1
        self._record(trial, status="running", started=time.time())

    def _record(self, trial: Any, **fields: Any) -> None:
        """Write who ``trial`` is (id, config, session) into its ``trial.json``, with ``fields``."""
        tid = int(trial.config[TRIAL_KEY])
        update_trial(self.spec.trial_dir(tid), trial_id=tid, config=sampled(trial.config), session=self.session,
                     retry_of=trial.config.get(RETRY_KEY), ray_trial=trial.trial_id, **fields)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        tid = int(trial.config[TRIAL_KEY])
        self.cost[tid] = float(result.get("cost_usd", 0.0))
        if tid not in self.placed and "node_id" in result:
            self.placed.add(tid)
            update_trial(self.spec.trial_dir(tid), node_id=result["node_id"], node_ip=result.get("node_ip"))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        tid = int(trial.config[TRIAL_KEY])
        wall = self.budget.wall_left
        if (trial.last_result or {}).get(EXIT_KEY) == 0:  # its run exited cleanly after its last round
            self.progress.end_trial(tid, status="completed")
        elif wall is not None and time.monotonic() - self.started >= wall - 1.0:
            self.progress.end_trial(tid, status="stopped", reason="budget")
        else:
            self.progress.end_trial(tid, status="stopped", reason="scheduler")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        tid = int(trial.config[TRIAL_KEY])
        self.failed.add(tid)
        tdir = self.spec.trial_dir(tid)
        if "trial_id" not in (read_json(tdir / "trial.json") or {}):  # its actor died before Tune started it
            self._record(trial)
        reason = (read_json(tdir / "exit.json") or {}).get("reason") or "its Ray actor failed"
        error = tail(tdir / "std.err") or str(getattr(trial, "error_msg", "") or "")
        self.progress.end_trial(tid, status="failed", reason=reason, error=error)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if time.monotonic() - self.last_tick > 2.0:
            self.state.tick()
            self.last_tick = time.monotonic()


class AtBudget(Stopper):
    """Stops the whole session once :meth:`Journal.spent` says so."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.journal.spent()
