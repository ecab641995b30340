"""``task=drift``: config checks, pooling, checkpoint backbones, and baseline -> monitor through the runner.

Everything runs on the tiny random BERT (``model=bert_tiny``) and a few dozen review texts.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from omegaconf import DictConfig, OmegaConf

from sagelab.config import PROJECT_ROOT, ConfigError
from sagelab.readers.capture import capture_line

from conftest import compose_config, dispatch_cfg as run

SEED_SENTENCES = [
    "Thanks so much for driving me home",
    "Thanks so much for cooking dinner. I really appreciate it",
    "Nice to meet you, Sergio. So, where are you from",
]


def compose(tmp_path: Path, *overrides: str) -> DictConfig:
    return compose_config("task=drift", "model=bert_tiny", "task.n_permutations=99", "task.batch_size=8",
                          "task.max_length=32", *overrides, tmp=tmp_path, tiny=False)


def review_texts(domain: str, n: int) -> list[str]:
    csv.field_size_limit(1 << 30)
    with open(PROJECT_ROOT / "data" / "drift" / "blitzer" / f"{domain}.tsv", newline="", encoding="utf-8") as f:
        return [row["sentence"] for row in csv.DictReader(f, delimiter="\t")][:n]


# -- config checks (no torch, no data) --------------------------------------------------------------
@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("task.pooling=max", "task.pooling"),
        ("task.fpr=1.5", "task.fpr"),
        ("task.calibration_fraction=0", "task.calibration_fraction"),
        ("task.threshold=high", "task.threshold"),
        ("task.window_size=0", "task.window_size"),
        ("task.window=day", "task.window"),
        ("task.n_permutations=abc", "task.n_permutations"),
        ("task.baseline_limit=2.5", "task.baseline_limit"),
        ("+task.foo=1", "task.foo"),
        ("model=gcn", "model"),
        ("task.alpha=0.001", "task.n_permutations"),
        ("task.baseline_source=/nope/books.tsv", "task.baseline_source"),
        ("task.baseline_source=task:nope", "task.baseline_source"),
        ("task.encoder_checkpoint=not-a-run", "task.encoder_checkpoint"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, override: str, key: str) -> None:
    from sagelab.tasks.drift.task import DriftTask

    cfg = compose(tmp_path, "mode=baseline", override)
    with pytest.raises(ConfigError) as err:
        DriftTask(cfg).validate()
    assert err.value.key == key


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("task.n_permutations=abc", "task.n_permutations: wrong type: 'abc' is not a whole number."),
        ("task.foo=1", "task.foo: no such key"),
        ("task.pooling=max", "task.pooling: is 'max'"),
    ],
)
def test_bad_task_keys_on_the_command_line_are_one_line_and_exit_2(run_cli, override: str, message: str) -> None:
    proc = run_cli("task=drift", override, tiny=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith(f"sagelab: bad config: {message}")


def test_monitor_needs_a_capture_and_the_task_has_no_training_mode(tmp_path: Path) -> None:
    from sagelab.tasks.drift.task import DriftTask

    with pytest.raises(ConfigError, match="task.capture"):
        DriftTask(compose(tmp_path, "mode=monitor", "task.capture=null")).validate()
    task = DriftTask(compose(tmp_path, "mode=monitor"))
    assert task.modes() == ("baseline", "monitor", "report", "diagnose")  # diagnose: the contract's opt-in
    with pytest.raises(ConfigError, match="mode"):
        run(compose(tmp_path, "mode=train"))


# -- embeddings --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_encoder() -> tuple:
    import torch

    from sagelab.tasks.drift.embedding import load_encoder

    torch.manual_seed(0)
    cfg = OmegaConf.load(PROJECT_ROOT / "conf" / "model" / "bert_tiny.yaml")
    return (cfg, *load_encoder(cfg))


@pytest.mark.parametrize("pooling", ["second_to_last_mean", "last_mean", "cls"])
def test_batched_pooling_ignores_padding(tiny_encoder: tuple, pooling: str) -> None:
    from sagelab.tasks.drift.embedding import embed_texts

    _, model, tok = tiny_encoder
    texts = ["short one", SEED_SENTENCES[1], "a somewhat longer sentence about a kitchen blender that broke"]
    batched = embed_texts(model, tok, texts, pooling, batch_size=3, max_length=32)
    single = np.vstack([embed_texts(model, tok, [t], pooling, batch_size=1, max_length=32) for t in texts])
    assert batched.shape == (3, 64)
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_seed_pooling_is_the_mean_of_the_second_to_last_layer(tiny_encoder: tuple) -> None:
    import torch

    from sagelab.tasks.drift.embedding import embed_texts

    _, model, tok = tiny_encoder
    enc = tok(SEED_SENTENCES[0], return_tensors="pt")
    with torch.no_grad():  # the seed: one sentence, hidden_states[-2][0] averaged over its tokens
        expected = model(**enc, output_hidden_states=True).hidden_states[-2][0].mean(dim=0).numpy()
    got = embed_texts(model, tok, [SEED_SENTENCES[0]], "second_to_last_mean")[0]
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_encoder_weights_come_from_a_task_checkpoint(tmp_path: Path, tiny_encoder: tuple) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification

    from sagelab.models import load_model
    from sagelab.tasks.drift.embedding import embed_texts, load_encoder

    cfg, _, tok = tiny_encoder
    classifier = load_model(cfg, AutoModelForSequenceClassification, num_labels=2)
    state = {f"model.{k}": v for k, v in classifier.state_dict().items()}  # as a LightningModule saves it
    torch.save({"state_dict": state}, tmp_path / "final.ckpt")
    model, _ = load_encoder(cfg, tmp_path / "final.ckpt")
    for name, value in classifier.bert.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name
    assert embed_texts(model, tok, ["x"]).shape == (1, 64)
    torch.save({"state_dict": {"head.weight": torch.zeros(2, 2)}}, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="different model"):
        load_encoder(cfg, tmp_path / "other.ckpt")


# -- baseline -> monitor through the runner --------------------------------------------------------
def test_baseline_then_monitor_with_corrupt_capture(tmp_path: Path) -> None:
    import mlflow

    books = tmp_path / "books.tsv"
    with open(books, "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["sentence", "label"])
        for text in review_texts("books", 60):
            writer.writerow([text, 1])
    cap = tmp_path / "capture" / "2022" / "01"
    cap.mkdir(parents=True)
    (cap / "01.jsonl").write_text(
        capture_line(SEED_SENTENCES, "ev-seed") + "\n" + '{"captureData": broken\n'
        + "\n".join(capture_line(t) for t in review_texts("kitchen", 20)) + "\n"
    )
    (cap / "02.jsonl").write_bytes(b'{"text": "\xff"}\n' + json.dumps({"text": "last one"}).encode() + b"\n")
    (cap / "03.jsonl").write_text("")

    common = [f"task.baseline_source={books}", f"task.capture={tmp_path / 'capture'}", "task.fpr=0.1"]
    base_metrics = run(compose(tmp_path, "mode=baseline", *common))
    assert base_metrics["baseline/reference_records"] + base_metrics["baseline/calibration_records"] <= 60
    folder = tmp_path / "out" / "baseline"
    meta = json.loads((folder / "baseline.json").read_text())
    assert meta["pooling"] == "second_to_last_mean" and meta["model"]["name"] == "bert_tiny"
    assert np.load(folder / "embeddings.npy").shape[1] == 64

    # task.baseline unset: the latest finished baseline run of the experiment is used
    metrics = run(compose(tmp_path, "mode=monitor", "task.threshold=0.5", "task.window_size=12", *common))
    assert metrics["drift/records"] == 3 + 20 + 1
    assert metrics["drift/bad_lines"] == 3 and metrics["drift/windows"] == 2
    stats = json.loads((tmp_path / "out" / "monitor" / "statistics.json").read_text())
    bad = {(Path(b["file"]).name, b["line"]) for b in stats["bad_lines"]}
    assert bad == {("01.jsonl", 2), ("02.jsonl", 1), ("03.jsonl", 0)}
    assert stats["threshold"]["method"] == "fixed" and stats["threshold"]["value"] == 0.5
    assert stats["record_count"] == 24 and "p_value" in stats["windows"][0]

    report = json.loads((tmp_path / "out" / "monitor" / "constraint_violations.json").read_text())
    scores = [json.loads(line)["score"] for line in open(tmp_path / "out" / "monitor" / "scores.jsonl")]
    assert len(report["violations"]) == sum(s < 0.5 for s in scores) == metrics["drift/violations"]
    assert (tmp_path / "out" / "monitor" / "score_histogram.png").stat().st_size > 1000

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    runs = mlflow.search_runs(experiment_names=["drift"], output_format="list")
    monitor_run = next(r for r in runs if r.data.tags["mode"] == "monitor")
    assert monitor_run.data.metrics["drift/bad_lines"] == 3
    logged = {a.path for a in mlflow.MlflowClient().list_artifacts(monitor_run.info.run_id, "monitor")}
    assert {"monitor/constraint_violations.json", "monitor/statistics.json", "monitor/score_histogram.png"} <= logged

    # an explicit run id works the same; threshold 1.0 makes every record a violation in the seed's shape
    base_run = next(r for r in runs if r.data.tags["mode"] == "baseline").info.run_id
    seed_cap = tmp_path / "seed.jsonl"
    seed_cap.write_text(capture_line(SEED_SENTENCES) + "\n")
    metrics = run(compose(tmp_path, "mode=monitor", f"task.baseline={base_run}", f"task.capture={seed_cap}",
                          "task.threshold=1.0", "task.endpoint_name=ep", *common[:1]))
    assert metrics["drift/records"] == 3 and metrics["drift/violations"] == 3
    report = json.loads((tmp_path / "out" / "monitor" / "constraint_violations.json").read_text())
    assert [v["sentence"] for v in report["violations"]] == SEED_SENTENCES
    for v in report["violations"]:
        assert v["feature_name"] == "sent_cosine_score" and v["constraint_check_type"] == "baseline_drift_check"
        assert v["avg_cosine_score"] < 1.0 and v["endpoint_name"] == "ep" and "below the threshold" in v["description"]
