"""The search-space schema: parsing, translation to Syne Tune / Optuna, validation before any trial."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from sagelab.config import PROJECT_ROOT, ConfigError
from sagelab.hpo.space import SearchSpace, format_value

from conftest import compose_config


SEED_SPACE = {
    "name": "s",
    "params": {
        "lr": {"type": "loguniform", "low": 1e-6, "high": 1e-4, "key": "optim.lr"},
        "batch_size": {"type": "randint", "low": 16, "high": 48, "key": "optim.batch_size"},
        "warmup_ratio": {"type": "uniform", "low": 0.0, "high": 0.5, "key": "optim.warmup_ratio"},
        "model": {"type": "choice", "values": ["minilm", "bert_tiny"], "key": "model"},
    },
}


def test_translates_to_syne_tune_domains():
    from syne_tune.config_space import Categorical, Float, Integer

    st = SearchSpace.from_config(SEED_SPACE).syne_tune()
    assert isinstance(st["lr"], Float) and st["lr"].lower == 1e-6 and st["lr"].upper == 1e-4
    assert "LogUniform" in type(st["lr"].get_sampler()).__name__
    assert isinstance(st["batch_size"], Integer) and (st["batch_size"].lower, st["batch_size"].upper) == (16, 48)
    assert isinstance(st["warmup_ratio"], Float) and st["warmup_ratio"].upper == 0.5
    assert isinstance(st["model"], Categorical) and list(st["model"].categories) == ["minilm", "bert_tiny"]
    for _ in range(50):  # samples respect the inclusive bounds
        assert 16 <= st["batch_size"].sample() <= 48
        assert 1e-6 <= st["lr"].sample() <= 1e-4


def test_translates_to_optuna_distributions():
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    od = SearchSpace.from_config(SEED_SPACE).optuna()
    assert od["lr"] == FloatDistribution(1e-6, 1e-4, log=True)
    assert od["batch_size"] == IntDistribution(16, 48)
    assert od["warmup_ratio"] == FloatDistribution(0.0, 0.5)
    assert od["model"] == CategoricalDistribution(["minilm", "bert_tiny"])


def test_optuna_suggest_samples_inside_the_space():
    import optuna

    space = SearchSpace.from_config(SEED_SPACE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        config = space.suggest(trial)
        assert all(space.params[n].contains(v) for n, v in config.items())
        study.tell(trial, 0.0)


def test_overrides_are_hydra_command_line_values():
    space = SearchSpace.from_config(SEED_SPACE)
    overrides = space.overrides({"lr": 3.1e-05, "batch_size": 17, "warmup_ratio": 0.25, "model": "bert_tiny"})
    assert overrides == ["optim.lr=3.1e-05", "optim.batch_size=17", "optim.warmup_ratio=0.25", "model=bert_tiny"]
    assert format_value("a b") == "'a b'" and format_value(True) == "true"


@pytest.mark.parametrize(
    "param, key, words",
    [
        ({"type": "normal", "low": 0, "high": 1, "key": "optim.lr"}, "search_space.params.p.type", "allowed"),
        ({"type": "uniform", "low": 1, "high": 1, "key": "optim.lr"}, "search_space.params.p.high", "greater"),
        ({"type": "loguniform", "low": 0.0, "high": 1, "key": "optim.lr"}, "search_space.params.p.low", "> 0"),
        ({"type": "loguniform", "low": "1e-6", "high": 1e-4, "key": "optim.lr"}, "search_space.params.p.low", "1.0e-6"),
        ({"type": "randint", "low": 1.5, "high": 4, "key": "optim.batch_size"}, "search_space.params.p.low", "whole"),
        ({"type": "choice", "values": [], "key": "model"}, "search_space.params.p.values", "non-empty"),
        ({"type": "choice", "values": [1, "a"], "key": "model"}, "search_space.params.p.values", "one type"),
        ({"type": "uniform", "low": 0, "high": 1}, "search_space.params.p.key", "dotted"),
        ({"type": "uniform", "low": 0, "high": 1, "key": "optim.lr", "step": 2}, "search_space.params.p", "unknown"),
    ],
)
def test_schema_errors_name_the_key(param, key, words):
    with pytest.raises(ConfigError) as err:
        SearchSpace.from_config({"name": "bad", "params": {"p": param}})
    assert err.value.key == key
    assert words in err.value.message


def test_validation_against_the_composed_config():
    cfg = compose_config("task=glue_mrpc", tiny=False)
    SearchSpace.from_config(SEED_SPACE).validate_against(cfg)
    bad = [
        ({"type": "uniform", "low": 0, "high": 1, "key": "optim.learning_rate"}, "key", "not a key"),
        ({"type": "choice", "values": ["minilm", "gpt9"], "key": "model"}, "values", "gpt9"),
        ({"type": "uniform", "low": 0, "high": 1, "key": "instance"}, "type", "config group"),
        ({"type": "uniform", "low": 0, "high": 1, "key": "optim"}, "key", "section"),
    ]
    for param, field, words in bad:
        space = SearchSpace.from_config({"name": "bad", "params": {"p": param}})
        with pytest.raises(ConfigError) as err:
            space.validate_against(cfg)
        assert err.value.key == f"search_space.params.p.{field}"
        assert words in err.value.message


@pytest.mark.parametrize("name, extra", [("glue_default", 3), ("glue_models", 4), ("glue_instances", 5)])
def test_shipped_glue_spaces_compose_and_validate(name, extra):
    cfg = compose_config("task=glue_mrpc", f"search_space={name}", tiny=False)
    space = SearchSpace.from_config(cfg.search_space)
    assert space.name == name and len(space.params) == extra
    if extra == 3:  # the seed's range; the spaces with a model choice give each model its own
        assert space.params["lr"].low == 1e-6 and space.params["lr"].high == 1e-4
    else:
        lr = space.params["lr"]
        assert lr.given == "model" and lr.low is None
        assert (lr.branch("minilm").low, lr.branch("minilm").high) == (1e-5, 2e-4)
        assert (lr.branch("bert_tiny").low, lr.branch("bert_tiny").high) == (5e-5, 5e-3)
    assert (space.params["batch_size"].low, space.params["batch_size"].high) == (16, 48)
    assert space.params["warmup_ratio"].high == 0.5
    space.validate_against(cfg)
    if extra >= 4:
        assert space.params["model"].values == ("minilm", "bert_tiny")
    if extra == 5:
        assert set(space.params["instance"].values) == {"local_cpu1", "local_cpu2"}


@pytest.mark.parametrize(
    "name, task, model",
    [("qa", "qa", "bert_tiny"), ("link_prediction", "link_prediction", "graphsage"), ("ner", "ner", "bert_tiny"),
     ("node_classification", "node_classification", "gcn"), ("node_regression", "node_regression", "gcn")],
)
def test_shipped_task_spaces(name, task, model):
    node = OmegaConf.load(PROJECT_ROOT / "conf" / "search_space" / f"{name}.yaml")
    space = SearchSpace.from_config(node)
    assert space.params and all(p.key.split(".")[0] in ("optim", "model", "task") for p in space.params.values())
    if not (PROJECT_ROOT / "conf" / "task" / f"{task}.yaml").exists():
        pytest.skip(f"task {task} is not in this tree")
    space.validate_against(compose_config(f"task={task}", f"model={model}", f"search_space={name}", tiny=False))


def test_defaults_are_the_composed_values():
    cfg = compose_config("task=glue_mrpc", "model=bert_tiny", tiny=False)
    defaults = SearchSpace.from_config(SEED_SPACE).defaults(cfg)
    assert defaults == {"lr": cfg.optim.lr, "batch_size": cfg.optim.batch_size,
                        "warmup_ratio": cfg.optim.warmup_ratio, "model": "bert_tiny"}


def test_space_files_are_plain_yaml(tmp_path: Path):
    # every shipped space parses on its own (no interpolation needed) except the ones built by defaults lists
    for path in sorted((PROJECT_ROOT / "conf" / "search_space").glob("*.yaml")):
        node = OmegaConf.load(path)
        if "defaults" in node:
            continue
        SearchSpace.from_config(node)


CONDITIONAL = {
    "name": "c",
    "params": {
        "lr": {"type": "loguniform", "key": "optim.lr", "given": "model",
               "ranges": {"minilm": {"low": 1e-5, "high": 2e-4}, "bert_tiny": {"low": 1e-3, "high": 1e-2}}},
        "batch_size": {"type": "randint", "low": 16, "high": 48, "key": "optim.batch_size"},
        "model": {"type": "choice", "values": ["minilm", "bert_tiny"], "key": "model"},
    },
}


def test_a_conditional_parameter_is_one_parameter_per_choice_for_the_backends():
    from optuna.distributions import FloatDistribution

    space = SearchSpace.from_config(CONDITIONAL)
    assert set(space.syne_tune()) == set(space.ray()) == {"lr@minilm", "lr@bert_tiny", "batch_size", "model"}
    assert space.optuna()["lr@bert_tiny"] == FloatDistribution(1e-3, 1e-2, log=True)
    raw = {"lr@minilm": 3e-5, "lr@bert_tiny": 5e-3, "batch_size": 20, "model": "bert_tiny"}
    assert space.effective(raw) == {"lr": 5e-3, "batch_size": 20, "model": "bert_tiny"}
    assert space.overrides(raw) == ["optim.lr=0.005", "optim.batch_size=20", "model=bert_tiny"]
    assert space.effective(space.effective(raw)) == space.effective(raw)  # an effective config stays as it is
    back = space.to_backend({"lr": 5e-3, "batch_size": 20, "model": "bert_tiny"}, fill=True)
    assert back["lr@bert_tiny"] == 5e-3 and space.params["lr"].branch("minilm").contains(back["lr@minilm"])
    assert "lr@minilm" not in space.to_backend({"lr": 5e-3, "model": "bert_tiny"})
    assert SearchSpace.from_config(space.to_dict()).to_dict() == space.to_dict()  # spec.json round trip


def test_optuna_suggests_the_chosen_models_lr_inside_its_range():
    import optuna

    space = SearchSpace.from_config(CONDITIONAL)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        config = space.suggest(trial)
        model = config["model"]
        assert set(trial.params) == {"model", f"lr@{model}", "batch_size"}  # only the chosen branch exists
        lr = space.effective(config)["lr"]
        assert space.params["lr"].branch(model).contains(lr)
        seen.add(model)
        study.tell(trial, 0.0)
    assert seen == {"minilm", "bert_tiny"}


@pytest.mark.parametrize(
    "change, key, words",
    [({"given": "batch_size"}, "search_space.params.lr.given", "not a choice parameter"),
     ({"given": "nope"}, "search_space.params.lr.given", "model"),
     ({"ranges": {"gpt9": {"low": 1e-5, "high": 1e-4}}}, "search_space.params.lr.ranges.gpt9", "not a choice"),
     ({"ranges": {"minilm": {"low": 1e-5, "high": 1e-4}}}, "search_space.params.lr.ranges", "bert_tiny"),
     ({"ranges": {"minilm": {"low": 1e-4, "high": 1e-5}, "bert_tiny": {"low": 1e-3, "high": 1e-2}}},
      "search_space.params.lr.ranges.minilm.high", "greater"),
     ({"ranges": {"minilm": {"low": 1e-5, "high": 2e-4, "key": "optim.x"}, "bert_tiny": {"low": 1e-3, "high": 1e-2}}},
      "search_space.params.lr.ranges.minilm", "low/high")],
)
def test_conditional_space_errors_name_the_key(change, key, words):
    bad = {"name": "c", "params": {**CONDITIONAL["params"], "lr": {**CONDITIONAL["params"]["lr"], **change}}}
    with pytest.raises(ConfigError) as err:
        SearchSpace.from_config(bad)
    assert err.value.key == key and words in err.value.message


def test_a_choice_left_out_of_ranges_falls_back_on_the_parameters_own_range():
    lr = {"type": "loguniform", "key": "optim.lr", "low": 1e-6, "high": 1e-4, "given": "model",
          "ranges": {"bert_tiny": {"low": 1e-3, "high": 1e-2}}}
    space = SearchSpace.from_config({"name": "c", "params": {**CONDITIONAL["params"], "lr": lr}})
    assert (space.params["lr"].branch("minilm").low, space.params["lr"].branch("minilm").high) == (1e-6, 1e-4)


def test_the_default_must_lie_in_the_chosen_models_range(capsys):
    from sagelab.hpo.seeding import initial_points

    space = SearchSpace.from_config(CONDITIONAL)
    points, default = initial_points({}, space, {"lr": 5e-5, "batch_size": 32, "model": "minilm"})
    assert default == {"model": "minilm", "lr": 5e-5, "batch_size": 32} and points == [default]
    points, default = initial_points({}, space, {"lr": 5e-5, "batch_size": 32, "model": "bert_tiny"})
    assert default is None and points == []
    assert "lr=5e-05 is outside loguniform 0.001..0.01 (lr's range for bert_tiny)" in capsys.readouterr().err
    with pytest.raises(ConfigError) as err:
        initial_points({"points_to_evaluate": [{"model": "bert_tiny", "lr": 1e-4}]}, space,
                       {"lr": 5e-5, "batch_size": 32, "model": "minilm"})
    assert err.value.key == "hpo.points_to_evaluate[0].lr"
