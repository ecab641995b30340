"""Multi-objective hyperparameter search over sagelab runs (Syne Tune and Optuna).

``python run.py task=glue_mrpc hpo=moasha search_space=glue_instances`` runs a
study whose every trial is an ordinary ``python run.py`` command. The parts,
kept apart as Syne Tune keeps Tuner, Scheduler and Backend apart:

* :mod:`~sagelab.hpo.space` -- the backend-neutral search-space schema and its
  translation to Syne Tune and Optuna distributions;
* :mod:`~sagelab.hpo.objectives` -- objectives by name (error, latency_ms,
  cost_usd, train_time_s);
* :mod:`~sagelab.hpo.spec` -- the resolved, validated study and the trial command
  (:mod:`~sagelab.hpo.inherit`: which of the command's overrides a trial inherits);
* :mod:`~sagelab.hpo.syne` / :mod:`~sagelab.hpo.optuna_study` -- the two engines
  (:mod:`~sagelab.hpo.syne_resume`: how a Syne Tune session continues the last one);
  :mod:`~sagelab.hpo.ray_study` -- ``hpo.backend=ray``: the same trials executed by Ray Tune on a Ray cluster
  (:mod:`~sagelab.hpo.ray_trial` on the nodes, :mod:`~sagelab.hpo.ray_journal` in the driver);
* :mod:`~sagelab.hpo.records` -- the study's journal, one live session, the budget left;
  :mod:`~sagelab.hpo.progress` -- one line per finished trial;
* :mod:`~sagelab.hpo.lifeline` -- trial processes that die with their study, and the trial timeout;
* :mod:`~sagelab.hpo.callback` / :mod:`~sagelab.hpo.report` -- what runs inside a trial;
* :mod:`~sagelab.hpo.pareto`, :mod:`~sagelab.hpo.best` -- front, hypervolume, plots,
  and the best configuration as a ``conf/experiment`` YAML;
* :mod:`~sagelab.hpo.study` -- :func:`run_study`, the CLI's entry point.

Nothing heavy is imported here: ``run.py --help`` and config errors stay instant.
"""

from __future__ import annotations

from typing import Any


def run_study(cfg: Any, overrides: Any = None) -> dict:
    from sagelab.hpo.study import run_study as _run

    return _run(cfg, overrides)
