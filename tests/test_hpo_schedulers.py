"""Early stopping (ASHA) and pruning (Optuna TPE) on the synthetic trial program."""

from __future__ import annotations

from pathlib import Path

from test_hpo_study import read_csv, run, study_args


def test_tpe_prunes_through_the_rdb_storage(tmp_path):
    import optuna

    summary = run(*study_args(tmp_path, "hpo=tpe", "search_space=glue_default", "hpo.max_trials=7",
                              "hpo.max_resource=3", "hpo.n_workers=2"))
    assert summary["n_pruned"] >= 1 and summary["n_completed"] >= 1
    storage = f"sqlite:///{summary['study_dir']}/optuna.db"
    study = optuna.load_study(study_name=summary["study"], storage=storage)
    states = [t.state.name for t in study.trials]
    assert states.count("PRUNED") == summary["n_pruned"] and states.count("COMPLETE") == summary["n_completed"]
    for t in study.trials:
        if t.state.name == "PRUNED":
            assert max(t.intermediate_values) < 3  # stopped before full fidelity


def test_asha_stops_poor_trials_early(tmp_path):
    summary = run(*study_args(tmp_path, "hpo=asha", "search_space=glue_default", "hpo.max_trials=5",
                              "hpo.max_resource=3", "hpo.n_workers=1", "+synthetic.epoch_s=0.5"))
    rows = read_csv(Path(summary["study_dir"]) / "results" / "trials.csv")
    stopped = [r for r in rows if r["status"] == "stopped"]
    assert stopped and all(int(r["rounds"]) < 3 for r in stopped)
    assert all(int(r["rounds"]) == 3 for r in rows if r["status"] == "completed")


def test_asha_never_runs_a_configuration_twice(tmp_path):
    """ASHA's searcher samples from its own RandomState(seed) for its first 5 results and from numpy's global
    generator after; seeded alike, trial 7 of a seed-0 study repeated trial 4 (a GLUE study here, 2026-12-03)."""
    summary = run(*study_args(tmp_path, "hpo=asha", "search_space=glue_minilm", "hpo.max_trials=12",
                              "hpo.max_resource=1", "hpo.n_workers=2", "seed=0"))
    rows = read_csv(Path(summary["study_dir"]) / "results" / "trials.csv")
    configs = [tuple(v for k, v in r.items() if k.startswith("config.")) for r in rows]
    assert len(configs) == 12 and len(set(configs)) == 12




def test_bo_study_runs_bore_to_its_budget(tmp_path):
    summary = run(*study_args(tmp_path, "hpo=bo", "search_space=glue_default", "hpo.max_trials=5",
                              "hpo.max_resource=1", "hpo.n_workers=2"))
    assert summary["n_completed"] == 5 and "hypervolume" not in summary  # one objective: no front to measure
    rows = read_csv(Path(summary["study_dir"]) / "results" / "trials.csv")
    assert min(float(r["error"]) for r in rows) == summary["best"]["error"]
