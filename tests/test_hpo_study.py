"""Whole studies on the synthetic trial program: scheduling, pruning, failures, results, best config.

Trials run ``python -m sagelab.hpo.synthetic`` (a known objective, milliseconds per epoch) through the same
launch, reporting and bookkeeping as real ``run.py`` trials; ``test_hpo_trial.py`` covers real ones.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import DictConfig

from sagelab.config import PROJECT_ROOT, ConfigError

from conftest import compose_config, mlflow_store

SYNTH = f"+hpo.command=[{sys.executable},-m,sagelab.hpo.synthetic]"


def study_args(tmp: Path, *extra: str) -> list[str]:
    return [
        "task=glue_mrpc",
        f"hpo.dir={tmp}/hpo",
        f"hpo.experiment_dir={tmp}/conf/experiment",
        f"logger.tracking_uri={mlflow_store(tmp)}",
        f"logger.artifact_location={tmp}/artifacts",
        SYNTH,
        *extra,
    ]


def compose(*overrides: str, searchpath: Path | None = None) -> DictConfig:
    return compose_config(*overrides, tiny=False, searchpath=searchpath)


def run(*overrides: str) -> dict:
    from sagelab.hpo.study import run_study

    return run_study(compose(*overrides), list(overrides))


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_moasha_study_front_plots_and_reproducible_best_config(tmp_path):
    summary = run(*study_args(tmp_path, "hpo=moasha", "search_space=glue_instances", "hpo.max_trials=6",
                              "hpo.n_workers=2", "hpo.max_resource=2", "data.train_limit=64"))
    results = Path(summary["study_dir"]) / "results"
    trials = read_csv(results / "trials.csv")
    assert summary["n_trials"] == 6 == len(trials)
    assert summary["n_completed"] + summary["n_stopped"] == 6
    # the front is exactly the non-dominated trials
    values = np.array([[float(r[k]) for k in ("error", "latency_ms", "cost_usd")] for r in trials])
    on_front = [r["pareto"] == "True" for r in trials]
    for i, point in enumerate(values):
        dominated = any(np.all(other <= point) and np.any(other < point) for other in values)
        assert on_front[i] == (not dominated)
    assert len(read_csv(results / "pareto.csv")) == sum(on_front) == summary["pareto_size"]
    assert 0 < summary["hypervolume"] <= 1
    for name in ("pareto_error_vs_latency_ms.png", "pareto_error_vs_cost_usd.png"):
        assert (results / name).read_bytes()[:4] == b"\x89PNG"

    # the best configuration composes back into exactly what its trial ran
    best_yaml = Path(summary["best_experiment"])
    assert best_yaml.parent == tmp_path / "conf" / "experiment"
    assert f"+experiment={best_yaml.stem} 'hydra.searchpath=[file://{tmp_path / 'conf'}]'" in best_yaml.read_text()
    cfg = compose(f"+experiment={best_yaml.stem}", searchpath=tmp_path / "conf")
    best = summary["best_config"]
    assert cfg.task.name == "glue_mrpc" and cfg.data.train_limit == 64 and cfg.trainer.max_epochs == 2
    assert cfg.optim.lr == best["lr"] and cfg.optim.batch_size == best["batch_size"]
    assert cfg.optim.warmup_ratio == best["warmup_ratio"]
    assert cfg.model.name == best["model"] and cfg.instance.name == best["instance"]
    assert cfg.hpo.name == "none"
    row = next(r for r in trials if int(r["trial_id"]) == summary["best_trial"])
    assert row["status"] == "completed" and float(row["error"]) == pytest.approx(summary["best"]["error"])

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    runs = mlflow.search_runs(search_all_experiments=True, filter_string="tags.`sagelab.hpo.role` = 'parent'")
    assert len(runs) == 1 and runs.iloc[0]["status"] == "FINISHED"
    assert runs.iloc[0]["metrics.hypervolume"] == pytest.approx(summary["hypervolume"])


def test_best_configs_in_the_experiment_group_need_no_search_path():
    from sagelab.hpo.best import reproduce_command

    path = PROJECT_ROOT / "conf" / "experiment" / "hpo" / "hpo_asha_glue_cola.yaml"
    assert reproduce_command(path) == "python run.py +experiment=hpo/hpo_asha_glue_cola"


@pytest.mark.parametrize("algorithm", ["random", "nsga2"])
def test_a_crashing_trial_is_recorded_and_the_study_goes_on(tmp_path, algorithm):
    # trials 1 and 3 raise in the trial program, whatever they drew and however the two workers interleave
    summary = run(*study_args(tmp_path, f"hpo={algorithm}", "search_space=glue_default",
                              "+synthetic.crash_trials=[1,3]", "hpo.max_trials=6", "hpo.max_resource=1",
                              "hpo.n_workers=2"))
    assert summary["n_trials"] == 6
    assert (summary["n_failed"], summary["n_completed"]) == (2, 4)
    for tdir in (Path(summary["study_dir"]) / "trials").iterdir():
        record = json.loads((tdir / "trial.json").read_text())
        assert record["status"] == ("failed" if record["trial_id"] in (1, 3) else "completed")
        if record["status"] == "failed":
            assert "crashes on purpose" in record["error"]
    assert summary["best_trial"] not in (1, 3)


def test_algorithm_files_share_one_base_that_is_not_an_option(capsys):
    from sagelab.cli import check_command_line
    from sagelab.config import group_options

    options = group_options(PROJECT_ROOT / "conf" / "hpo")
    assert "_base" not in options and {"asha", "moasha", "nsga2", "none"} <= set(options)
    base = compose("hpo=asha").hpo
    for name in options:
        if name != "none":
            hpo = compose(f"hpo={name}").hpo
            assert hpo.name == name and list(hpo) == list(base)  # every key of _base, in its order
    with pytest.raises(SystemExit) as stop:
        check_command_line(["hpo=_base"], PROJECT_ROOT / "conf")
    assert stop.value.code == 2 and "hpo: there is no option '_base'" in capsys.readouterr().err


def test_bad_study_config_is_reported_before_any_trial(tmp_path):
    cases = [
        (["search_space.params.lr.low=-1.0"], "search_space.params.lr.low"),
        (["+search_space.params.x={type:uniform,low:0,high:1,key:optim.nope}"], "search_space.params.x.key"),
        (["hpo.metrics=[error,latency_ms]"], "hpo.modes"),  # two metrics, one mode
        (["hpo.metrics=[error,latency_ms]", "hpo.modes=[min,min]"], "hpo.metrics"),  # asha: one objective
        (["hpo.grace_period=5"], "hpo.grace_period"),
        (["hpo.max_trials=null", "hpo.max_wallclock_s=null"], "hpo.max_trials"),
        (["+hpo.latency.batch_size=8"], "hpo.latency.batch_size"),  # gone: the whole first batch is timed
        (["hpo.trial_timeout_s=0"], "hpo.trial_timeout_s"),
    ]
    from sagelab.hpo.study import run_study

    for overrides, key in cases:
        cfg = compose(*study_args(tmp_path, "hpo=asha", "search_space=glue_default", *overrides))
        with pytest.raises(ConfigError) as err:
            run_study(cfg, [])
        assert err.value.key == key
    with pytest.raises(ConfigError) as err:
        run_study(compose(*study_args(tmp_path, "hpo=asha")), [])
    assert err.value.key == "search_space"
    assert not (tmp_path / "hpo").exists()  # nothing started

    # and through the command line: one paragraph, exit status 2 (glue_models' lr has a range per model, so
    # renaming a model there is first a range for a model the space lacks; the instance choice has none)
    proc = subprocess.run(
        [sys.executable, "run.py", *study_args(tmp_path, "hpo=moasha", "search_space=glue_instances",
                                               "search_space.params.instance.values=[local_cpu1,gpu9]")],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "search_space.params.instance.values" in proc.stderr and "gpu9" in proc.stderr
    assert not (tmp_path / "hpo").exists()


@pytest.mark.parametrize("name", ["..", ".", "../sibling", "/tmp/elsewhere", "a/b"])
def test_a_study_name_cannot_climb_out_of_hpo_dir(tmp_path, name):
    from sagelab.hpo.spec import build_spec

    cfg = compose(*study_args(tmp_path, "hpo=asha", "search_space=glue_default", f"hpo.study_name='{name}'"))
    with pytest.raises(ConfigError) as err:
        build_spec(cfg, [])
    assert err.value.key == "hpo.study_name" and "inside hpo.dir" in err.value.message
    assert not (tmp_path / "hpo").exists()


def test_trials_inherit_the_command_line_but_not_what_the_study_sets():
    from sagelab.hpo.space import SearchSpace
    from sagelab.hpo.inherit import split_overrides

    space = SearchSpace.from_config({"name": "s", "params": {
        "model": {"type": "choice", "values": ["minilm", "bert_tiny"], "key": "model"},
        "lr": {"type": "loguniform", "low": 1e-6, "high": 1e-4, "key": "optim.lr"}}})
    kept, dropped = split_overrides(
        ["task=glue_cola", "model=minilm", "++model.config_overrides.x=1", "optim.lr=1e-3", "hpo=asha",
         "hpo.max_trials=3", "search_space=glue_models", "trainer.max_epochs=5", "data.train_limit=64"], space)
    assert kept == ["task=glue_cola", "++model.config_overrides.x=1", "data.train_limit=64"]
    assert dropped == ["model=minilm", "optim.lr=1e-3", "trainer.max_epochs=5"]


def test_a_named_study_cannot_be_resumed_with_a_different_setup(tmp_path):
    from sagelab.hpo.spec import build_spec

    args = study_args(tmp_path, "hpo=asha", "search_space=glue_default", "hpo.study_name=mine")
    first = build_spec(compose(*args), ["task=glue_mrpc", "data.train_limit=64"])
    first.save()
    same = build_spec(compose(*args, "hpo.max_trials=99"), ["task=glue_mrpc", "data.train_limit=64"])
    same.check_resumable()  # a bigger budget continues the same study
    other = build_spec(compose(*args), ["task=glue_mrpc", "data.train_limit=128"])
    with pytest.raises(ConfigError) as err:
        other.check_resumable()
    assert err.value.key == "hpo.study_name" and "different setup" in err.value.message
