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
    assert space.params["lr"].low == 1e-6 and space.params["lr"].high == 1e-4
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
