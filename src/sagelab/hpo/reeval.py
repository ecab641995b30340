"""``hpo.reeval_seeds``: re-evaluate the study's top configurations on other seeds before choosing one.

One trial per configuration is one draw of the training noise (initialisation, data order, dropout); on a small
holdout that noise can be larger than the difference between configurations, and the study's single best trial
is then the luckiest one, not the best. So, when the study has spent its budget, :func:`reevaluate` runs the
``hpo.reeval_top_k`` best distinct configurations (lowest first objective among completed full-fidelity trials)
plus the default configuration again, each once per seed of ``hpo.reeval_seeds``: an ordinary trial command at
full fidelity with ``seed=<s>`` (:meth:`StudySpec.trial_argv`), which reports to ``reeval/<id>/result.json``
and to no scheduler. The winner is the lowest mean of the first objective over the seeds (only configurations
that finished every seed compete; ties go to more wins, then to the better search rank); each configuration's
mean ± std (sample std) and wins out of the seeds (the best on that seed; a tie is a win for each) are reported.

It is called from :func:`sagelab.hpo.study.finalize` once a session ends normally, so every backend gets it in
one place. A run that completed is kept (``reeval/<id>/run.json``): a re-evaluation cut short resumes with the
study's command, extending the study re-evaluates only what is new, and a failed run is tried again then. Runs go
``hpo.n_workers`` at a time.
"""

from __future__ import annotations

import statistics
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Mapping, Sequence

from sagelab.config import ConfigError
from sagelab.hpo.records import read_json, write_json
from sagelab.hpo.space import plain
from sagelab.hpo.spec import REEVAL_PREFIX, StudySpec


def options(hpo: Mapping[str, Any], storage: str | None) -> tuple[list[int], int]:
    """(``hpo.reeval_seeds``, ``hpo.reeval_top_k``) checked; no seeds: re-evaluation is off."""
    raw = hpo.get("reeval_seeds") or []
    seeds = list(raw) if not isinstance(raw, (str, int)) else [raw]
    if any(isinstance(s, bool) or not isinstance(s, int) for s in seeds) or len(set(seeds)) != len(seeds):
        raise ConfigError("hpo.reeval_seeds", f"must be a list of distinct whole numbers (seeds), got {list(seeds)!r}.")
    top_k = hpo.get("reeval_top_k", 3)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ConfigError("hpo.reeval_top_k", f"must be a whole number of at least 1, got {top_k!r}.")
    if seeds and storage:
        raise ConfigError("hpo.reeval_seeds", "is not available with hpo.storage: a shared study's workers end "
                          "independently and none knows it is the last; leave hpo.reeval_seeds empty there.")
    return [int(s) for s in seeds], int(top_k)


def run_id(trial_id: int, seed: int) -> str:
    return f"{REEVAL_PREFIX}t{trial_id}-s{seed}"


def candidates(spec: StudySpec, scored: Any, default_trial: int | None) -> list[dict[str, Any]]:
    """The ``reeval_top_k`` best distinct configurations (search rank order), then the default trial's."""
    first = spec.objective_list()[0]
    full = scored[(scored["status"] == "completed") & scored["full_fidelity"]]
    ranked = full.assign(_key=full[first.name].map(first.minimised)).sort_values(["_key", "trial_id"])
    params = [c for c in scored.columns if c.startswith("config.")]

    def config(row: Any) -> dict[str, Any]:
        return {c[len("config."):]: plain(row[c]) for c in params if row[c] == row[c]}  # (NaN: not set)

    out: list[dict[str, Any]] = []
    for rank, (_, row) in enumerate(ranked.iterrows(), start=1):
        if len(out) >= spec.reeval_top_k:
            break
        if config(row) not in [c["config"] for c in out]:
            out.append({"trial_id": int(row["trial_id"]), "config": config(row), "search_rank": rank,
                        "is_default": int(row["trial_id"]) == default_trial})
    if default_trial is not None and default_trial not in [c["trial_id"] for c in out]:
        row = scored[scored["trial_id"] == default_trial].iloc[0]
        out.append({"trial_id": default_trial, "config": config(row), "search_rank": None, "is_default": True})
    return out


def reevaluate(spec: StudySpec, scored: Any, default_trial: int | None) -> dict[str, Any]:
    """Run (or reuse) every candidate x seed and rank them; returns the summary's ``reeval`` block."""
    chosen = candidates(spec, scored, default_trial)
    jobs = [(c, s) for c in chosen for s in spec.reeval_seeds]
    todo = [(c, s) for c, s in jobs if (read_json(_dir(spec, c, s) / "run.json") or {}).get("status") != "completed"]
    names = ", ".join(f"{c['trial_id']}{' (default)' if c['is_default'] else ''}" for c in chosen)
    print(f"sagelab hpo: re-evaluating trials {names} on seeds {', '.join(map(str, spec.reeval_seeds))}: "
          f"{len(todo)} of {len(jobs)} runs to go", flush=True)
    if todo:
        _Runs(spec, len(todo)).run_all(todo)
    return rank(spec, chosen, {(c["trial_id"], s): _read(spec, c, s) for c, s in jobs})


def rank(spec: StudySpec, chosen: list[dict[str, Any]], results: Mapping[tuple[int, int], dict[str, Any]]
         ) -> dict[str, Any]:
    """Mean ± std, wins and the winner from ``results[(trial_id, seed)]`` (``{"status", "values"}``)."""
    objectives = spec.objective_list()
    first = objectives[0]
    seeds = list(spec.reeval_seeds)
    for c in chosen:
        done = [(s, results[(c["trial_id"], s)]) for s in seeds]
        c["runs"] = [{"seed": s, "status": r["status"], **(r.get("values") or {})} for s, r in done]
        c["failed"] = [s for s, r in done if r["status"] != "completed"]
        finished = [r["values"] for _, r in done if r["status"] == "completed"]
        c["n"] = len(finished)
        c["mean"] = {o.name: statistics.fmean(v[o.name] for v in finished) for o in objectives} if finished else {}
        c["std"] = {o.name: statistics.stdev(v[o.name] for v in finished) if len(finished) > 1 else 0.0
                    for o in objectives} if finished else {}
        c["wins"] = 0
    for s in seeds:  # a win: the best first objective on that seed (ties: a win each)
        on_seed = {c["trial_id"]: first.minimised(results[(c["trial_id"], s)]["values"][first.name])
                   for c in chosen if results[(c["trial_id"], s)]["status"] == "completed"}
        for c in chosen:
            if on_seed and on_seed.get(c["trial_id"]) == min(on_seed.values()):
                c["wins"] += 1
    complete = [c for c in chosen if c["n"] == len(seeds)]
    winner = min(complete, key=lambda c: (first.minimised(c["mean"][first.name]), -c["wins"],
                                          c["search_rank"] or len(chosen) + 1), default=None)
    return {"seeds": seeds, "top_k": spec.reeval_top_k, "candidates": chosen,
            "winner_trial": None if winner is None else winner["trial_id"]}


def _dir(spec: StudySpec, candidate: Mapping[str, Any], seed: int) -> Any:
    return spec.trial_dir(run_id(candidate["trial_id"], seed))


def _read(spec: StudySpec, candidate: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """``{"status", "values"}`` of one run: its objectives in natural units at its last round."""
    folder = _dir(spec, candidate, seed)
    status = (read_json(folder / "run.json") or {}).get("status", "failed")
    history = (read_json(folder / "result.json") or {}).get("history") or []
    if status != "completed" or not history:
        return {"status": status}
    last = history[-1]
    return {"status": status, "values": {o.name: o.natural(last["objectives"][o.key]) for o in spec.objective_list()}}


class _Runs:
    """The re-evaluation runs, ``hpo.n_workers`` at a time, each killed if the study is interrupted."""

    def __init__(self, spec: StudySpec, total: int) -> None:
        from sagelab.hpo.lifeline import RunningTrials

        self.spec, self.total, self.done = spec, total, 0
        self.processes = RunningTrials()  # the study is interrupted: start nothing more, record nothing cut short
        self.kill_all = self.processes.kill_all
        self.lock = threading.Lock()  # the progress count and its line

    def run_all(self, jobs: Sequence[tuple[dict[str, Any], int]]) -> None:
        from sagelab.hpo.lifeline import interrupt_on_signals

        pool = ThreadPoolExecutor(max_workers=self.spec.n_workers)
        try:
            with interrupt_on_signals(self.kill_all):
                for future in [pool.submit(self.one, c, s) for c, s in jobs]:
                    future.result()
        except BaseException:
            self.kill_all()
            pool.shutdown(wait=True, cancel_futures=True)  # queued runs never start
            raise
        pool.shutdown(wait=True)

    def one(self, candidate: dict[str, Any], seed: int) -> None:
        from sagelab.config import PROJECT_ROOT
        from sagelab.hpo.lifeline import timed_out

        spec, name = self.spec, run_id(candidate["trial_id"], seed)
        folder = spec.trial_dir(name)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "result.json").unlink(missing_ok=True)  # a run cut short starts again from its beginning
        argv = spec.trial_argv(name, candidate["config"], extra=[f"seed={seed}"])
        (folder / "command.txt").write_text(" ".join(argv) + "\n")
        with open(folder / "std.out", "w") as out, open(folder / "std.err", "w") as err:
            proc = self.processes.launch(argv, cwd=PROJECT_ROOT, stdout=out, stderr=err)
            code = None if proc is None else self.processes.wait(proc, spec.trial_timeout_s)
            if self.processes.stopping:  # killed with the study (or never started): run again when its command is
                return
            reason = timed_out(name, spec.trial_timeout_s or 0, err) if code is None else None
        history = (read_json(folder / "result.json") or {}).get("history") or []
        status = "completed" if code == 0 and len(history) >= spec.max_resource else "failed"
        reason = reason or (f"exit code {code}" if code != 0 else None) or \
            (f"{len(history)} of {spec.max_resource} rounds reported" if status == "failed" else None)
        write_json(folder / "run.json", {"status": status, "returncode": code, "reason": reason, "seed": seed,
                                         "trial_id": candidate["trial_id"]})
        with self.lock:
            self.done += 1
            first = spec.objective_list()[0]
            value = _read(spec, candidate, seed).get("values", {}).get(first.name)
            shown = f"{first.name} {value:.4g}" if value is not None else f"failed ({reason}; see {folder / 'std.err'})"
        print(f"sagelab hpo: re-evaluation of trial {candidate['trial_id']} on seed {seed}: {shown} "
              f"| {self.done}/{self.total}", flush=True)


def report_lines(block: Mapping[str, Any], objective: str) -> list[str]:
    """The report's lines: each configuration's mean ± std of ``objective`` and its wins, winner marked."""
    n = len(block["seeds"])
    out = [f"re-evaluated on seeds {', '.join(map(str, block['seeds']))} (mean ± std of {objective}, wins of {n}):"]
    for c in block["candidates"]:
        tag = " (default)" if c["is_default"] else ""
        mark = "  <- chosen" if c["trial_id"] == block["winner_trial"] else ""
        if c["n"]:
            score = f"{c['mean'][objective]:.4g} ± {c['std'][objective]:.2g}, wins {c['wins']}/{n}"
        else:
            score = "no run finished"
        failed = f", failed on seeds {', '.join(map(str, c['failed']))}" if c["failed"] else ""
        out.append(f"  trial {c['trial_id']}{tag}: {score}{failed}{mark}")
    if block["winner_trial"] is None:
        out.append("  no configuration finished every seed: the study's own best trial stands")
    return out


def apply(spec: StudySpec, scored: Any, summary: dict[str, Any]) -> None:
    """Re-evaluate, then make the winner the summary's best (values: its means over the seeds) and measure the
    gain over the default on the same footing (the default's means); writes ``results/reeval.csv``."""
    import pandas as pd

    block = reevaluate(spec, scored, summary.get("default_trial"))
    summary["reeval"] = block
    pd.DataFrame([{"trial_id": c["trial_id"], "is_default": c["is_default"], "search_rank": c["search_rank"],
                   "chosen": c["trial_id"] == block["winner_trial"], "wins": c["wins"], **run,
                   **{f"config.{k}": v for k, v in c["config"].items()}}
                  for c in block["candidates"] for run in c["runs"]]).to_csv(spec.results_dir / "reeval.csv",
                                                                            index=False)
    winner = next((c for c in block["candidates"] if c["trial_id"] == block["winner_trial"]), None)
    if winner is None:
        return
    summary.update(search_best_trial=summary["best_trial"], search_best=summary["best"])
    summary.update(best_trial=winner["trial_id"], best_config=dict(winner["config"]), best=dict(winner["mean"]),
                   best_full_fidelity=True, best_is_default=winner["is_default"])
    default = next((c for c in block["candidates"] if c["is_default"]), None)
    if default is None or default["n"] < len(block["seeds"]):
        summary["improvement"] = None  # no like-for-like default to compare with
        return
    from sagelab.hpo.study import improvement

    summary.update(default=dict(default["mean"]), default_full_fidelity=True,
                   improvement=improvement(spec, default["mean"], winner["mean"]))


def metrics(block: Mapping[str, Any]) -> dict[str, float]:
    """The parent run's metrics: per re-evaluated trial, mean and std of each objective and its wins."""
    out: dict[str, float] = {"reeval_seeds": float(len(block["seeds"]))}
    for c in block["candidates"]:
        out[f"reeval_t{c['trial_id']}_wins"] = float(c["wins"])
        for name, value in c["mean"].items():
            key = name.replace("/", "_")
            out[f"reeval_t{c['trial_id']}_{key}_mean"] = float(value)
            out[f"reeval_t{c['trial_id']}_{key}_std"] = float(c["std"][name])
    return out
