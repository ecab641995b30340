"""A study's first trials: the default configuration is trial 0 in every backend, known-good points follow it,
an earlier study seeds a new one (``hpo.warm_start``), and the summary says what the study gained over the
default. Trials are the synthetic stand-in (``test_hpo_study.SYNTH``): its error is a bowl whose bottom is
lr=10**-4.5, warmup_ratio=0.1, batch_size=24, so a command that sets exactly those makes the default optimal.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sagelab.config import PROJECT_ROOT, ConfigError
from test_hpo_study import compose, run, study_args

OPTIMAL = ("optim.lr=3.1622776601683795e-05", "optim.warmup_ratio=0.1", "optim.batch_size=24")


def trial_configs(study_dir: str | Path) -> dict[int, dict]:
    out = {}
    for path in (Path(study_dir) / "trials").glob("*/trial.json"):
        record = json.loads(path.read_text())
        out[int(record["trial_id"])] = record["config"]
    return dict(sorted(out.items()))


def default_of(*args: str) -> dict:
    from sagelab.hpo.spec import build_spec

    return build_spec(compose(*args), []).default_config


@pytest.mark.parametrize("algorithm", ["asha", "random", "tpe"])
def test_the_default_configuration_is_trial_0(tmp_path, algorithm):
    args = study_args(tmp_path, f"hpo={algorithm}", "search_space=glue_default", "hpo.max_trials=4",
                      "hpo.max_resource=1", "hpo.points_to_evaluate=[{lr:1.0e-5,batch_size:16}]")
    summary = run(*args)
    configs = trial_configs(summary["study_dir"])
    default = default_of(*args)
    assert default == {"lr": 5e-05, "batch_size": 32, "warmup_ratio": 0.1}  # the composed config's values
    assert configs[0] == default
    assert configs[1] == {"lr": 1e-05, "batch_size": 16, "warmup_ratio": 0.1}  # the point; warmup from the default
    assert [c for c in configs.values()].count(default) == 1
    assert summary["default_trial"] == 0 and "error" in summary["default"]
    assert summary["n_trials"] == 4 and summary["session"]["new_trials"] == 4  # the enqueued ones count too


def test_the_default_is_trial_0_of_a_shared_study_and_enqueued_once(tmp_path):
    import optuna

    storage = f"sqlite:///{tmp_path}/shared.db"
    args = study_args(tmp_path, "hpo=tpe", "search_space=glue_default", "hpo.max_resource=1",
                      f"hpo.storage={storage}", "hpo.study_name=shared")
    run(*args, "hpo.max_trials=3")
    summary = run(*args, "hpo.max_trials=5")  # a second worker, later: the study goes on
    study = optuna.load_study(study_name="shared", storage=storage)
    trials = study.get_trials()
    assert trials[0].params == default_of(*args) and trials[0].user_attrs["sagelab.origin"] == "default"
    assert sum(t.params == trials[0].params for t in trials) == 1
    assert summary["n_trials"] == 5 and summary["default_trial"] == 0


@pytest.mark.parametrize("algorithm", ["asha", "tpe"])
def test_a_resumed_study_does_not_run_the_default_again(tmp_path, algorithm):
    args = study_args(tmp_path, f"hpo={algorithm}", "search_space=glue_default", "hpo.max_resource=1")
    run(*args, "hpo.max_trials=2")
    summary = run(*args, "hpo.max_trials=4")
    configs = trial_configs(summary["study_dir"])
    assert len(configs) == 4 and list(configs.values()).count(default_of(*args, "hpo.max_trials=4")) == 1
    assert summary["default_trial"] == 0


@pytest.mark.parametrize("algorithm", ["random", "tpe"])
def test_when_no_trial_beats_the_default_the_default_is_the_best(tmp_path, capsys, algorithm):
    summary = run(*study_args(tmp_path, f"hpo={algorithm}", "search_space=glue_default", "hpo.max_trials=5",
                              "hpo.max_resource=1", *OPTIMAL))
    assert summary["best_trial"] == summary["default_trial"] == 0 and summary["best_is_default"]
    assert summary["improvement"] == 0.0 and summary["best"] == summary["default"]
    assert "no trial beat the default" in capsys.readouterr().out
    assert "no trial beat the default" in Path(summary["best_experiment"]).read_text()


def test_the_summary_states_the_default_and_the_gain_over_it(tmp_path, capsys):
    # a default far from the bowl's bottom: some random trial beats it
    summary = run(*study_args(tmp_path, "hpo=random", "search_space=glue_default", "hpo.max_trials=6",
                              "hpo.max_resource=1", "optim.lr=1.0e-6", "optim.warmup_ratio=0.5"))
    default, best = summary["default"]["error"], summary["best"]["error"]
    assert not summary["best_is_default"] and best < default
    assert summary["improvement"] == pytest.approx((default - best) / default)
    written = json.loads((Path(summary["study_dir"]) / "results" / "summary.json").read_text())
    assert written["improvement"] == pytest.approx(summary["improvement"]) and written["default_trial"] == 0
    assert f"{100 * summary['improvement']:.1f}% better on error" in capsys.readouterr().out
    assert "better on error" in Path(summary["best_experiment"]).read_text()
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    (parent,) = mlflow.search_runs(search_all_experiments=True, filter_string="tags.`sagelab.hpo.role` = 'parent'",
                                   output_format="list")
    assert parent.data.metrics["default_error"] == pytest.approx(default)
    assert parent.data.metrics["improvement_over_default"] == pytest.approx(summary["improvement"])


def test_a_max_objective_gains_with_the_same_sign(tmp_path):
    from sagelab.hpo.study import against_default
    from sagelab.hpo.spec import build_spec
    import pandas as pd

    spec = build_spec(compose(*study_args(tmp_path, "hpo=random", "search_space=glue_default",
                                          "hpo.metrics=[val/f1]", "hpo.modes=[max]")), [])
    table = pd.DataFrame([{"trial_id": 0, **{f"config.{k}": v for k, v in spec.default_config.items()},
                           "val/f1": 0.5, "full_fidelity": True}])
    out = against_default(spec, table, 3, {"val/f1": 0.6})
    assert out["default_trial"] == 0 and out["improvement"] == pytest.approx(0.2)


def test_a_default_outside_the_space_is_skipped_with_one_line(tmp_path, capsys):
    from sagelab.hpo.spec import build_spec

    spec = build_spec(compose(*study_args(tmp_path, "hpo=asha", "search_space=glue_default", "optim.lr=1.0e-3")), [])
    assert spec.default_config is None and spec.points == []
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "default configuration is not evaluated: lr=0.001 is outside loguniform" in err[0]
    off = build_spec(compose(*study_args(tmp_path, "hpo=asha", "search_space=glue_default",
                                         "hpo.evaluate_default=false")), [])
    assert off.default_config is None and off.points == []


def test_bad_points_and_warm_start_name_the_key(tmp_path):
    from sagelab.hpo.spec import build_spec

    cases = [("hpo.points_to_evaluate=[{lrr:1.0e-5}]", "hpo.points_to_evaluate[0].lrr"),
             ("hpo.points_to_evaluate=[{lr:1.0e-5},{lr:1.0}]", "hpo.points_to_evaluate[1].lr"),
             ("hpo.points_to_evaluate=[3]", "hpo.points_to_evaluate[0]"),
             ("hpo.warm_start=no-such-study", "hpo.warm_start"),
             ("hpo.warm_start=0123456789abcdef0123456789abcdef", "hpo.warm_start"),
             ("hpo.warm_start=me hpo.study_name=me", "hpo.warm_start")]
    for override, key in cases:
        with pytest.raises(ConfigError) as err:
            build_spec(compose(*study_args(tmp_path, "hpo=asha", "search_space=glue_default", *override.split())), [])
        assert err.value.key == key, override
    proc = subprocess.run([sys.executable, "run.py", *study_args(tmp_path, "hpo=tpe", "search_space=glue_default",
                                                                 "hpo.warm_start=no-such-study")],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "hpo.warm_start" in proc.stderr and "no-such-study" in proc.stderr
    assert not (tmp_path / "hpo").exists()


def test_an_optuna_study_warm_started_holds_the_earlier_trials(tmp_path, capsys):
    import optuna

    first = run(*study_args(tmp_path, "hpo=tpe", "search_space=glue_default", "hpo.max_trials=4",
                            "hpo.max_resource=1", "hpo.study_name=before"))
    earlier = optuna.load_study(study_name="before", storage=f"sqlite:///{first['study_dir']}/optuna.db")
    done = {t.number: t for t in earlier.get_trials() if t.state.name == "COMPLETE"}
    parent_run = json.loads((Path(first["study_dir"]) / "spec.json").read_text())["parent_run_id"]
    # by name, and by the earlier study's MLflow parent run; the second one searches one parameter more
    for name, ref, space in (("by-name", "before", "glue_default"), ("by-run", parent_run, "glue_models")):
        summary = run(*study_args(tmp_path, "hpo=tpe", f"search_space={space}", "hpo.max_trials=2",
                                  "hpo.max_resource=1", f"hpo.study_name={name}", f"hpo.warm_start={ref}"))
        study = optuna.load_study(study_name=name, storage=f"sqlite:///{summary['study_dir']}/optuna.db")
        warm = [t for t in study.get_trials() if t.user_attrs.get("sagelab.origin") == "warm_start"]
        # glue_models gives minilm (the default model, which the earlier trials ran) its own lr range, 1e-5..2e-4:
        # Optuna gets the earlier lr under that branch's name, and the earlier trials outside it are left out
        low, high = (1e-5, 2e-4) if space == "glue_models" else (1e-6, 1e-4)
        expected = sorted((t.params["lr"], t.value) for t in done.values() if low <= t.params["lr"] <= high)
        assert expected and sorted((t.params.get("lr", t.params.get("lr@minilm")), t.value) for t in warm) == expected
        assert study.get_trials()[0].user_attrs["sagelab.origin"] == "default"
        assert summary["n_trials"] == 2  # the earlier trials are not this study's: no budget, no results
    assert "its search space differs; using the parameters both share (lr, batch_size, warmup_ratio)" in \
        capsys.readouterr().err


def test_a_syne_tune_study_warm_started_runs_the_earlier_best_first(tmp_path):
    import csv

    first = run(*study_args(tmp_path, "hpo=random", "search_space=glue_default", "hpo.max_trials=6",
                            "hpo.max_resource=1", "hpo.study_name=before"))
    with open(Path(first["study_dir"]) / "results" / "trials.csv") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: float(r["error"]))
    default = default_of(*study_args(tmp_path, "hpo=asha", "search_space=glue_default"))
    best = [{"lr": float(r["config.lr"]), "batch_size": int(r["config.batch_size"]),
             "warmup_ratio": float(r["config.warmup_ratio"])} for r in rows]
    best = [c for c in best if c != default]  # the earlier default is this study's trial 0 already
    summary = run(*study_args(tmp_path, "hpo=asha", "search_space=glue_default", "hpo.max_trials=5",
                              "hpo.max_resource=1", "hpo.study_name=after", "hpo.warm_start=before"))
    configs = list(trial_configs(summary["study_dir"]).values())
    assert configs[0] == default
    assert configs[1:2] == best[:1]  # warm_k(5) = 1: the earlier best configuration comes right after the default


def test_the_ray_searcher_suggests_the_default_first_and_resumes_past_it(tmp_path):
    """StudySearcher alone (no cluster): the default, then the points, then the seeded random stream; a resumed
    searcher neither suggests the points again nor replays draws they never made."""
    from sagelab.hpo.ray_journal import StudySearcher
    from sagelab.hpo.ray_trial import RETRY_KEY, TRIAL_KEY
    from sagelab.hpo.spec import build_spec

    spec = build_spec(compose(*study_args(tmp_path, "hpo=asha", "search_space=glue_default", "hpo.backend=ray",
                                          "hpo.points_to_evaluate=[{lr:1.0e-5}]")), [])

    def configs(searcher, n):
        return [{k: v for k, v in searcher.suggest(str(i)).items() if k not in (TRIAL_KEY, RETRY_KEY)}
                for i in range(n)]

    fresh = configs(StudySearcher(spec, [], 0, [], None), 5)
    assert fresh[0] == spec.default_config and fresh[1] == {**spec.default_config, "lr": 1e-5}
    for done in (1, 3):  # stopped after the default, or after one random draw
        records = [{"trial_id": i, "config": fresh[i], "retry_of": None} for i in range(done)]
        assert configs(StudySearcher(spec, records, done, [], None), 5 - done) == fresh[done:]


def test_two_sqlite_workers_run_the_default_once(tmp_path):
    """Two worker processes on one SQLite study: both ask for a trial at once, one takes the default."""
    import optuna

    storage = f"sqlite:///{tmp_path}/shared.db"
    args = study_args(tmp_path, "hpo=tpe", "search_space=glue_default", "hpo.max_resource=1", "hpo.max_trials=4",
                      f"hpo.storage={storage}", "hpo.study_name=two", "hpo.n_workers=2")
    proc = subprocess.run([sys.executable, "run.py", *args], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = optuna.load_study(study_name="two", storage=storage).get_trials()
    done = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(done) == 4 and trials[0].params == default_of(*args) and trials[0].state.name == "COMPLETE"
    assert sum(t.params == trials[0].params for t in trials) == 1
