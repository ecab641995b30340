"""A GLUE run end to end on the tiny model: what lands in MLflow, evaluate/predict, failures recorded."""

import json
from pathlib import Path

import pytest

from sagelab.cli import dispatch
from sagelab.config import ConfigError

from conftest import compose_config, mlflow_runs


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny CoLA fine-tune shared by the tests below."""
    tmp = tmp_path_factory.mktemp("glue")
    cfg = compose_config("task=glue_cola", tmp=tmp)
    metrics = dispatch(cfg)
    return tmp, cfg, metrics


def test_run_is_recorded_in_mlflow(trained):
    tmp, cfg, metrics = trained
    runs = mlflow_runs(tmp, "glue_cola")
    assert len(runs) == 1
    run = runs.iloc[0]
    assert run["status"] == "FINISHED"
    assert run["params.optim.lr"] == "0.001" and run["params.model.name"] == "bert_tiny"
    assert run["tags.instance"] == "local_cpu1" and run["tags.task"] == "glue_cola"
    assert run["tags.mlflow.source.git.commit"]
    for key in ("metrics.val/mcc", "metrics.val/accuracy", "metrics.cost_usd", "metrics.train/loss"):
        assert key in runs.columns and runs[key].notna().all(), key
    assert run["metrics.val/mcc"] == pytest.approx(metrics["val/mcc"])
    assert run["metrics.cost_usd"] > 0

    from mlflow import MlflowClient

    artifacts = {a.path for a in MlflowClient().list_artifacts(run["run_id"])}
    assert {"config.yaml", "checkpoint"} <= artifacts  # the MLflow model is a LoggedModel, listed by its path
    assert [a.path for a in MlflowClient().list_artifacts(run["run_id"], "checkpoint")] == ["checkpoint/final.ckpt"]
    assert "model/MLmodel" in {a.path for a in MlflowClient().list_artifacts(run["run_id"], "model")}


def test_train_logs_loss_per_step(trained):
    tmp, _, _ = trained
    from mlflow import MlflowClient

    runs = mlflow_runs(tmp, "glue_cola")
    run_id = runs[runs["tags.mode"] == "train"].iloc[0]["run_id"]
    history = MlflowClient().get_metric_history(run_id, "train/loss")
    assert len(history) >= 3 and len({m.step for m in history}) == len(history)


def test_evaluate_reproduces_the_trained_metric(trained, make_cfg):
    tmp, cfg, metrics = trained
    eval_cfg = make_cfg("task=glue_cola", "mode=evaluate", f"checkpoint.load={cfg.checkpoint.dir}/final.ckpt",
                        f"logger.tracking_uri={cfg.logger.tracking_uri}")
    again = dispatch(eval_cfg)
    assert again["val/mcc"] == pytest.approx(metrics["val/mcc"], abs=1e-6)
    assert again["val/accuracy"] == pytest.approx(metrics["val/accuracy"], abs=1e-6)


def test_evaluate_by_mlflow_run_id(trained, make_cfg):
    tmp, cfg, metrics = trained
    runs = mlflow_runs(tmp, "glue_cola")
    run_id = runs[runs["tags.mode"] == "train"].iloc[0]["run_id"]
    eval_cfg = make_cfg("task=glue_cola", "mode=evaluate", f"checkpoint.load={run_id}",
                        f"logger.tracking_uri={cfg.logger.tracking_uri}",
                        f"logger.artifact_location={cfg.logger.artifact_location}")
    assert dispatch(eval_cfg)["val/accuracy"] == pytest.approx(metrics["val/accuracy"], abs=1e-6)


def test_predict_labels_records_and_skips_bad_lines(trained, make_cfg, tmp_path, capsys):
    _, cfg, _ = trained
    src = tmp_path / "in.jsonl"
    src.write_text('{"sentence": "The cat sat on the mat."}\n{"text": "wrong field"}\nnot json\n'
                   '{"sentence": "Mat the on sat cat the."}\n')
    out = tmp_path / "pred.jsonl"
    dispatch(make_cfg("task=glue_cola", "mode=predict", f"predict.input={src}", f"predict.output={out}",
                      f"checkpoint.load={cfg.checkpoint.dir}/final.ckpt"))
    answers = [json.loads(line) for line in out.read_text().splitlines()]
    assert [a["sentence"] for a in answers] == ["The cat sat on the mat.", "Mat the on sat cat the."]
    assert all(a["label"] in (0, 1) and 0.5 <= a["probability"] <= 1 for a in answers)
    printed = capsys.readouterr().out
    assert f"{src}:2: skipped" in printed and f"{src}:3: skipped" in printed


def test_failed_run_is_recorded_with_its_error(make_cfg, tmp_path):
    data = tmp_path / "cola"
    data.mkdir()
    (data / "in_domain_train.tsv").write_text("gj04\t1\t\tFine.\nbroken\n")
    for name in ("in_domain_dev.tsv", "out_of_domain_dev.tsv"):
        (data / name).write_text("gj04\t1\t\tFine.\n")
    cfg = make_cfg("task=glue_cola", f"task.source={data}")
    with pytest.raises(ConfigError, match="line 2"):
        dispatch(cfg)
    run = mlflow_runs(tmp_path, "glue_cola").iloc[0]
    assert run["status"] == "FAILED"
    assert "in_domain_train.tsv" in run["tags.error"] and "line 2" in run["tags.error"]


def test_mode_compare_lines_up_runs(make_cfg, tmp_path, capsys):
    for lr in ("1e-3", "3e-3"):
        dispatch(make_cfg("task=glue_cola", f"optim.lr={lr}", f"checkpoint.dir={tmp_path}/ckpt{lr}"))
    capsys.readouterr()
    dispatch(make_cfg("task=glue_cola", "mode=compare"))
    printed = capsys.readouterr().out
    assert "2 training runs of 'glue_cola', sorted by val/mcc" in printed
    header = printed.splitlines()[1].split()
    assert "optim.lr" in header and "val/mcc" in header
    assert "optim.batch_size" not in header  # only the parameters that differ
    csv = Path(make_cfg().output_dir) / "compare_glue_cola.csv"
    assert csv.exists() and len(csv.read_text().splitlines()) == 3


def test_holdout_validates_on_training_data_and_tests_on_dev(make_cfg, tmp_path):
    """data.holdout: selection data comes out of the training set; the dev set is scored once, as test/*."""
    from sagelab.tasks.glue.task import GlueTask

    cfg = make_cfg("task=glue_mrpc", "data.holdout=0.25", "data.train_limit=48", "data.eval_limit=16")
    datamodule = GlueTask(cfg).datamodule()
    datamodule.setup()
    train, held, test = (datamodule.splits[s] for s in ("train", "eval", "test"))
    assert (len(train), len(held), len(test)) == (36, 12, 16)
    pairs = lambda d: {tuple(x) for x in d["input_ids"]}  # noqa: E731
    assert not pairs(train) & pairs(held)  # the held-out slice is never trained on
    other_seed = GlueTask(make_cfg("task=glue_mrpc", "data.holdout=0.25", "data.train_limit=48", "seed=7")).datamodule()
    other_seed.setup()
    assert pairs(other_seed.splits["eval"]) == pairs(held)  # every run and trial holds out the same examples

    metrics = dispatch(cfg)
    assert {"val/f1", "test/f1", "test/accuracy"} <= set(metrics)
    run = mlflow_runs(tmp_path, "glue_mrpc").iloc[0]
    assert run["metrics.test/f1"] == pytest.approx(metrics["test/f1"])


@pytest.mark.parametrize(("overrides", "words"), [
    (["task=qa", "data.holdout=0.1"], "no holdout split"),
    (["task=glue_cola", "data.holdout=1.5"], "fraction below 1 or a whole number"),
])
def test_bad_holdout_names_the_key(make_cfg, overrides, words):
    with pytest.raises(ConfigError, match=words) as err:
        dispatch(make_cfg(*overrides))
    assert err.value.key == "data.holdout"
