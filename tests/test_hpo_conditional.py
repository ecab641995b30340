"""Conditional search spaces in whole studies: ``search_space=glue_models`` gives each model its own lr range.

Every backend must launch each trial with the lr of the model it chose (``optim.lr`` on the trial's command line,
inside that model's range), and trials.csv / the best configuration must show that effective lr, not the
per-model parameters the backend sampled. Trials are the synthetic stand-in (``test_hpo_study.SYNTH``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sagelab.hpo.space import SearchSpace
from test_hpo_study import compose, read_csv, run, study_args

RANGES = {"minilm": (1e-5, 2e-4), "bert_tiny": (5e-5, 5e-3)}  # conf/search_space/glue_models.yaml


def launched(study_dir: Path) -> dict[int, dict[str, str]]:
    """``{trial id: {override key: value}}`` from each trial's command.txt (what the trial really ran)."""
    out = {}
    for path in (study_dir / "trials").glob("*/command.txt"):
        tokens = path.read_text().split()
        out[int(path.parent.name)] = dict(t.split("=", 1) for t in tokens if "=" in t)
    return out


# Syne Tune's whole study is slow (its Tuner polls every 0.5 s): CI checks its scheduler below, the study in slow
@pytest.mark.parametrize("algorithm", [pytest.param("random", marks=pytest.mark.slow), "tpe"])  # Syne Tune, Optuna
def test_each_trial_runs_the_lr_range_of_the_model_it_chose(tmp_path, algorithm):
    summary = run(*study_args(tmp_path, f"hpo={algorithm}", "search_space=glue_models", "hpo.max_trials=5",
                              "hpo.max_resource=1"))
    study_dir = Path(summary["study_dir"])
    commands = launched(study_dir)
    rows = {int(r["trial_id"]): r for r in read_csv(study_dir / "results" / "trials.csv")}
    assert len(commands) == len(rows) == 5
    assert not [c for c in next(iter(rows.values())) if "@" in c]  # trials.csv: the effective lr only
    models = set()
    for trial_id, row in rows.items():
        model, lr = commands[trial_id]["model"], float(commands[trial_id]["optim.lr"])
        low, high = RANGES[model]
        assert low <= lr <= high, (trial_id, model, lr)
        assert row["config.model"] == model and float(row["config.lr"]) == lr
        models.add(model)
    assert models == {"minilm", "bert_tiny"}  # 4 draws after the default: both branches were taken
    assert rows[0]["config.model"] == "minilm" and float(rows[0]["config.lr"]) == 5e-5  # the default is trial 0
    best = summary["best_config"]
    cfg = compose(f"+experiment={Path(summary['best_experiment']).stem}",
                  searchpath=tmp_path / "conf")  # the best configuration file carries the effective lr
    assert cfg.optim.lr == best["lr"] and cfg.model.name == best["model"]
    assert RANGES[best["model"]][0] <= best["lr"] <= RANGES[best["model"]][1]


@pytest.mark.parametrize("algorithm", ["asha", "moasha", "bo"])
def test_syne_tune_schedulers_suggest_every_branch_and_the_trial_applies_the_chosen_one(tmp_path, algorithm):
    """What a Syne Tune study hands trial_entry.py: the default first (its branches filled), then samples."""
    from sagelab.hpo.spec import build_spec
    from sagelab.hpo.syne import make_scheduler

    spec = build_spec(compose(*study_args(tmp_path, f"hpo={algorithm}", "search_space=glue_models")), [])
    scheduler = make_scheduler(spec, spec.seed)
    space = SearchSpace.from_config(spec.space)
    models = set()
    for i in range(12):
        config = scheduler.suggest().config
        assert {"lr@minilm", "lr@bert_tiny"} <= set(config)
        argv = dict(t.split("=", 1) for t in spec.trial_argv(i, config) if "=" in t)
        model, lr = argv["model"], float(argv["optim.lr"])
        assert lr == config[f"lr@{model}"] and RANGES[model][0] <= lr <= RANGES[model][1]
        models.add(model)
        if i == 0:
            assert space.effective(config) == spec.default_config
    assert models == {"minilm", "bert_tiny"}


def test_the_ray_searcher_applies_the_chosen_models_lr(tmp_path):
    """Ray samples every branch (as Syne Tune does); the trial's overrides carry the chosen model's one."""
    from sagelab.hpo.ray_journal import StudySearcher
    from sagelab.hpo.ray_trial import sampled
    from sagelab.hpo.spec import build_spec

    spec = build_spec(compose(*study_args(tmp_path, "hpo=asha", "search_space=glue_models", "hpo.backend=ray")), [])
    searcher = StudySearcher(spec, [], 0, [], None)
    space = SearchSpace.from_config(spec.space)
    models = set()
    for i in range(12):
        config = sampled(searcher.suggest(str(i)))
        assert {"lr@minilm", "lr@bert_tiny"} <= set(config)
        argv = dict(t.split("=", 1) for t in spec.trial_argv(i, config) if "=" in t)
        model, lr = argv["model"], float(argv["optim.lr"])
        assert lr == config[f"lr@{model}"] and RANGES[model][0] <= lr <= RANGES[model][1]
        assert space.effective(config)["lr"] == lr
        models.add(model)
        if i == 0:
            assert space.effective(config) == spec.default_config
    assert models == {"minilm", "bert_tiny"}


def test_an_optuna_study_warm_started_from_a_conditional_one(tmp_path):
    """The earlier study's effective lr goes back to Optuna under the branch name of its model."""
    import optuna

    run(*study_args(tmp_path, "hpo=tpe", "search_space=glue_models", "hpo.max_trials=4", "hpo.max_resource=1",
                    "hpo.study_name=before"))
    summary = run(*study_args(tmp_path, "hpo=tpe", "search_space=glue_models", "hpo.max_trials=1",
                              "hpo.max_resource=1", "hpo.study_name=after", "hpo.warm_start=before"))
    study = optuna.load_study(study_name="after", storage=f"sqlite:///{summary['study_dir']}/optuna.db")
    warm = [t for t in study.get_trials() if t.user_attrs.get("sagelab.origin") == "warm_start"]
    assert len(warm) == 4
    for t in warm:
        assert set(t.params) == {"model", f"lr@{t.params['model']}", "batch_size", "warmup_ratio"}
    spec = json.loads((Path(summary["study_dir"]) / "spec.json").read_text())
    assert spec["space"]["params"]["lr"]["given"] == "model"
