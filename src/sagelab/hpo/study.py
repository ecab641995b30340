"""``python run.py ... hpo=<algorithm> search_space=<space>``: run a study, then summarise it.

:func:`run_study` is what the CLI calls when ``hpo.name != none``:

1. resolve and check the study (:func:`~sagelab.hpo.spec.build_spec`): a bad
   space, objective or budget stops here, before any trial;
2. open the study's MLflow parent run (re-opened when the study resumes);
3. run the trials with Syne Tune (:mod:`sagelab.hpo.syne`), Optuna
   (:mod:`sagelab.hpo.optuna_study`) or, with ``hpo.backend=ray``, Ray Tune on a Ray cluster
   (:mod:`sagelab.hpo.ray_study`) until the budget is spent;
4. :func:`finalize`: trials.csv, the Pareto front (pareto.csv + PNG plots),
   the hypervolume, with ``hpo.reeval_seeds`` the top configurations and the default re-evaluated on those
   seeds (:mod:`sagelab.hpo.reeval`), the best configuration as ``conf/experiment/hpo/hpo_<study>.yaml``,
   all logged to the parent run; trial runs the scheduler killed are closed as KILLED.

With ``hpo.storage`` set (Optuna), the study lives in a shared database instead and every process running
the command is one of its workers (:mod:`sagelab.hpo.optuna_shared`).

Re-running the same command resumes the study; a SIGTERM or Ctrl-C ends it
cleanly (running trials are stopped, the parent run is marked KILLED). One session
of a study runs at a time (another is refused, exit status 75); a study whose
failed trials pass ``hpo.max_failures`` is finalized and ends with exit status 1.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from omegaconf import DictConfig

from sagelab.hpo.lifeline import interrupt_on_signals
from sagelab.hpo.records import StudyBusy, StudyState, give_up_message, hold_session, load_trials
from sagelab.hpo.space import plain
from sagelab.hpo.spec import StudySpec, build_spec


BUSY_EXIT = 75  # EX_TEMPFAIL: the same command works once the other session has ended


def check(cfg: DictConfig) -> StudySpec:
    """Validate ``hpo.*`` and ``search_space.*`` without running anything (raises ConfigError)."""
    return build_spec(cfg)


def run_study(cfg: DictConfig, overrides: Sequence[str] | None = None) -> dict[str, Any]:
    """Run (or resume) the study the config describes; returns its summary."""
    spec = build_spec(cfg, overrides)
    spec.check_resumable()
    if spec.backend == "ray":  # an unreachable cluster is a config error, found before the study starts
        from sagelab.hpo.ray_study import check_address

        check_address(spec.ray_address)
    if spec.storage is not None:  # a study shared through an RDB: every process is a worker, none is refused
        from sagelab.hpo.optuna_shared import run_shared

        return run_shared(cfg, spec)
    try:
        with hold_session(spec.dir, spec.name):
            return _run_session(cfg, spec)
    except StudyBusy as err:  # raised before this session touched anything
        print(f"sagelab hpo: {err}", file=sys.stderr)
        raise SystemExit(BUSY_EXIT) from None


def _run_session(cfg: DictConfig, spec: StudySpec) -> dict[str, Any]:
    from sagelab import tracking

    state = StudyState(spec.dir)
    verb = "resuming" if state.resumed else "starting"
    print(f"sagelab hpo: {verb} study {spec.name} ({spec.algorithm}, {spec.backend}) in {spec.dir}", flush=True)
    tags = {
        "mlflow.runName": f"hpo {spec.name}",
        "sagelab.hpo.study": spec.name,
        "sagelab.hpo.role": "parent",
        "sagelab.hpo.algorithm": spec.algorithm,
    }
    parent = tracking.RunRecord(cfg, state.parent_run_id, is_global_zero=True, tags=tags)
    if state.parent_run_id is None:
        state.parent_run_id = parent.run_id
    spec.parent_run_id = parent.run_id
    spec.save()
    parent.log_artifact(spec.spec_path)

    if spec.backend == "syne_tune":
        from sagelab.hpo import syne as backend
    elif spec.backend == "ray":
        from sagelab.hpo import ray_study as backend
    else:
        from sagelab.hpo import optuna_study as backend
    started = time.monotonic()
    try:
        with interrupt_on_signals():
            info = backend.run(spec, state)
        # a study that gave up is finalized as it stands; one that spent its budget is re-evaluated first
        summary = {**finalize(spec, parent, reevaluate=not info.get("gave_up")), "session": info,
                   "session_s": time.monotonic() - started}
    except KeyboardInterrupt:  # in a trial or in a re-evaluation run: the study resumes from here
        summary = finalize(spec, parent)
        parent.finish("KILLED")
        print(f"sagelab hpo: study {spec.name} interrupted after {summary['n_trials']} trials; "
              "re-run the same command to resume.", file=sys.stderr)
        raise SystemExit(130)
    except BaseException as err:
        parent.finish("FAILED", f"{type(err).__name__}: {err}")
        raise
    if info.get("gave_up"):
        message = give_up_message(spec.name, summary["n_failed"], spec.max_failures)
        parent.finish("FAILED", message)
        _print_summary(spec, summary)
        print(f"sagelab hpo: {message}", file=sys.stderr)
        raise SystemExit(1)
    parent.finish("FINISHED")
    _print_summary(spec, summary)
    return summary


def trials_table(spec: StudySpec, records: list[dict[str, Any]] | None = None) -> Any:
    """One row per trial: id, status, epochs, sampled values, natural objective values, metrics.

    ``records``: the trials as :func:`~sagelab.hpo.records.load_trials` reads them from the study folder (the
    default), or as a shared study's storage holds them (:func:`sagelab.hpo.storage.records`)."""
    import pandas as pd

    objectives = spec.objective_list()
    space = spec.search_space()
    rows = []
    for record in load_trials(spec.dir) if records is None else records:
        result = record.get("result") or {}
        history = result.get("history") or []
        row: dict[str, Any] = {
            "trial_id": int(record["trial_id"]),
            "status": record.get("status"),
            "rounds": len(history),
            "full_fidelity": len(history) >= spec.max_resource,
            "mlflow_run_id": result.get("mlflow_run_id"),
        }
        # what the trial set (a conditional lr: the chosen branch's), not every branch the backend sampled
        row.update({f"config.{k}": v for k, v in space.effective(record.get("config") or {}).items()})
        if history:
            last = history[-1]
            for obj in objectives:
                row[obj.name] = obj.natural(last["objectives"][obj.key])
            for key, value in last.items():
                if key not in ("round", "objectives", "time") and key not in row:
                    row[key] = value
            row["finished_at"] = last.get("time")
        row["started_at"] = record.get("started")
        if record.get("node_id"):  # hpo.backend=ray: the Ray node that ran it
            row["node_id"], row["node_ip"] = record["node_id"], record.get("node_ip")
        rows.append(row)
    return pd.DataFrame(rows)


def finalize(spec: StudySpec, parent: Any | None = None, records: list[dict[str, Any]] | None = None,
             reevaluate: bool = False) -> dict[str, Any]:
    """Write the study's results (CSV, front, plots, hypervolume, best config) and log them to ``parent``
    (``records``: see :func:`trials_table`). ``reevaluate``: the study ended normally, so ``hpo.reeval_seeds``
    (if set) re-evaluates its top configurations and the default, and the best is the winner of that."""
    import numpy as np

    from sagelab.hpo import pareto
    from sagelab.hpo.best import write_experiment

    out = spec.results_dir
    out.mkdir(parents=True, exist_ok=True)
    table = trials_table(spec, records)
    objectives = spec.objective_list()
    names = [o.name for o in objectives]
    summary: dict[str, Any] = {"study": spec.name, "algorithm": spec.algorithm, "study_dir": str(spec.dir),
                               "objectives": names, "n_trials": int(len(table))}
    for status in ("completed", "stopped", "pruned", "failed", "interrupted"):
        summary[f"n_{status}"] = int((table["status"] == status).sum()) if len(table) else 0
    scored = table.dropna(subset=names) if len(table) and set(names) <= set(table.columns) else table.iloc[0:0]
    if len(table):
        table["pareto"] = False
    if len(scored):
        minimised = np.column_stack([[o.minimised(v) for v in scored[o.name]] for o in objectives])
        mask = pareto.pareto_mask(minimised)
        table.loc[scored.index[mask], "pareto"] = True
        if len(objectives) > 1:  # (with one objective it is 1 by construction of the bounds)
            lower, upper = pareto.default_bounds(minimised)
            summary["hypervolume"] = pareto.hypervolume(minimised, lower, upper)
            summary["hv_lower"], summary["hv_upper"] = lower.tolist(), upper.tolist()
        front = table.loc[scored.index[mask]].sort_values(names[0])
        front.to_csv(out / "pareto.csv", index=False)
        summary["pareto_size"] = int(mask.sum())
        xs = [n for n in [*names[1:], "latency_ms", "cost_usd"] if n in table and n != names[0]]
        plots = pareto.plot_pairs(table, list(dict.fromkeys(xs)), names[0], "pareto", out,
                                  title=f"{spec.name} ({len(scored)} trials)")
        summary["plots"] = [str(p) for p in plots]
        best = _best_row(scored, objectives, spec)
        record = {"trial_id": int(best["trial_id"]),
                  "config": {k[len("config."):]: plain(best[k]) for k in best.index if k.startswith("config.")}}
        values = {n: float(best[n]) for n in names}
        summary.update(best_trial=record["trial_id"], best=values, best_config=record["config"],
                       best_full_fidelity=bool(best["full_fidelity"]))
        summary.update(against_default(spec, scored, record["trial_id"], values))
        if reevaluate and spec.reeval_seeds:
            from sagelab.hpo import reeval

            reeval.apply(spec, scored, summary)
            record = {"trial_id": summary["best_trial"], "config": summary["best_config"]}
            values = dict(summary["best"])
        path = write_experiment(spec, record, values, Path(spec.experiment_dir), against=summary)
        summary["best_experiment"] = str(path)
    table.to_csv(out / "trials.csv", index=False)
    from sagelab.hpo.records import write_json

    write_json(out / "summary.json", summary)
    if parent is not None:
        _log_parent(spec, parent, summary, table)
    return summary


def against_default(spec: StudySpec, scored: Any, best_trial: int, best: dict[str, float]) -> dict[str, Any]:
    """The default configuration's trial (the first scored one whose config is the default) and how much better
    the best trial is on the first objective: ``improvement`` = relative gain over the default's value,
    positive = better for min and max objectives alike (None when the default scored exactly 0)."""
    from sagelab.hpo.seeding import is_default

    if spec.default_config is None or not len(scored):
        return {}
    params = [c for c in scored.columns if c.startswith("config.")]
    rows = [i for i, row in scored.sort_values("trial_id").iterrows()
            if is_default({c[len("config."):]: row[c] for c in params}, spec.default_config)]
    if not rows:
        return {}
    row = scored.loc[rows[0]]
    default = {o.name: float(row[o.name]) for o in spec.objective_list()}
    return {"default_trial": int(row["trial_id"]), "default": default,
            "default_full_fidelity": bool(row["full_fidelity"]), "best_is_default": int(row["trial_id"]) == best_trial,
            "improvement": improvement(spec, default, best)}


def improvement(spec: StudySpec, default: Mapping[str, float], best: Mapping[str, float]) -> float | None:
    """The best's relative gain over the default on the first objective (positive = better, for min and max
    objectives alike; None when the default scored exactly 0)."""
    first = spec.objective_list()[0]
    gain = first.minimised(default[first.name]) - first.minimised(best[first.name])
    base = abs(default[first.name])
    return gain / base if base > 0 else None


def _best_row(scored: Any, objectives: list, spec: StudySpec) -> Any:
    """Lowest first objective among full-fidelity completed trials (any scored trial if none finished)."""
    full = scored[(scored["status"] == "completed") & scored["full_fidelity"]]
    pool = full if len(full) else scored
    key = pool[objectives[0].name].map(objectives[0].minimised)
    return pool.loc[key.idxmin()]


def _log_parent(spec: StudySpec, parent: Any, summary: dict[str, Any], table: Any) -> None:
    metrics = {k: float(v) for k, v in summary.items() if k.startswith("n_") or k in ("hypervolume", "pareto_size")}
    metrics.update({f"best_{k.replace('/', '_')}": v for k, v in (summary.get("best") or {}).items()})
    metrics.update({f"default_{k.replace('/', '_')}": v for k, v in (summary.get("default") or {}).items()})
    if summary.get("improvement") is not None:
        metrics["improvement_over_default"] = float(summary["improvement"])
    if summary.get("reeval"):
        from sagelab.hpo.reeval import metrics as reeval_metrics

        metrics.update(reeval_metrics(summary["reeval"]))
        parent.set_tag("sagelab.hpo.reeval_winner", str(summary["reeval"]["winner_trial"]))
    parent.log_metrics(metrics)
    parent.log_artifact(spec.results_dir, "hpo")
    if summary.get("best_experiment"):
        parent.log_artifact(summary["best_experiment"], "hpo")
        parent.set_tag("sagelab.hpo.best_trial", str(summary["best_trial"]))
        parent.set_tag("sagelab.hpo.best_experiment", Path(summary["best_experiment"]).stem)
    client = parent.client
    if client is None or not len(table):
        return
    for _, row in table.iterrows():
        run_id = row.get("mlflow_run_id")
        if not isinstance(run_id, str):
            continue
        try:
            client.set_tag(run_id, "sagelab.hpo.status", str(row["status"]))
            # runs the scheduler (or the budget) killed never closed their MLflow record
            if row["status"] in ("stopped", "interrupted") and client.get_run(run_id).info.status == "RUNNING":
                client.set_terminated(run_id, "KILLED")
        except Exception as err:  # a missing child run must not lose the study's summary
            print(f"sagelab hpo: could not update MLflow run {run_id}: {err}", file=sys.stderr)


def _print_summary(spec: StudySpec, summary: dict[str, Any]) -> None:
    counts = ", ".join(f"{summary[f'n_{s}']} {s}" for s in ("completed", "stopped", "pruned", "failed", "interrupted")
                       if summary.get(f"n_{s}"))
    print(f"\nstudy {spec.name}: {summary['n_trials']} trials ({counts})")
    if "hypervolume" in summary:
        print(f"  hypervolume {summary['hypervolume']:.4f} (objectives scaled to the study's range; "
              f"front of {summary['pareto_size']})")
    if "best" in summary:
        best = ", ".join(f"{k}={v:.4g}" for k, v in summary["best"].items())
        reeval = summary.get("reeval") or {}
        how = f" (mean of {len(reeval['seeds'])} seeds)" if reeval.get("winner_trial") is not None else ""
        print(f"  best trial {summary['best_trial']}{how}: {best}")
        if "default" in summary:
            print(f"  {default_line(summary)}")
        if summary.get("reeval"):
            from sagelab.hpo.reeval import report_lines

            print("\n".join(f"  {text}" for text in report_lines(summary["reeval"], summary["objectives"][0])))
        from sagelab.hpo.best import reproduce_command

        print(f"  reproduce: {reproduce_command(Path(summary['best_experiment']))}")
    print(f"  results: {spec.results_dir}")


def default_line(summary: dict[str, Any]) -> str:
    """One line: the default configuration's score and what the study gained over it."""
    first = summary["objectives"][0]
    score = f"trial {summary['default_trial']}: {first}={summary['default'][first]:.4g}"
    reeval = summary.get("reeval") or {}
    if reeval.get("winner_trial") is not None and summary.get("improvement") is not None:
        score += f", mean of {len(reeval['seeds'])} seeds"  # the re-evaluation's footing, for both
    elif not summary["default_full_fidelity"]:
        score += ", stopped early"
    if summary["best_is_default"]:
        return f"no trial beat the default ({score}); the best configuration is the default one"
    if summary.get("improvement") is None:
        return f"default ({score}); the best trial is better on {first}"
    return f"default ({score}); the best trial is {100 * summary['improvement']:.1f}% better on {first}"
