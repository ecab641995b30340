"""Post-processing of QA logits and the SQuAD v1.1 EM/F1 metric."""

from __future__ import annotations

import numpy as np
import pytest

from sagelab.tasks.qa.postprocess import SquadV1, normalize_answer, postprocess_qa_predictions, score_one

CONTEXT = "The quick brown fox jumps over the lazy dog near Paris."
#          0   4     10    16  20    26   31  35   40  44   49
# offsets of a made-up tokenisation: [CLS] q q [SEP] then one token per context word, [SEP]
WORD_OFFSETS = [[0, 3], [4, 9], [10, 15], [16, 19], [20, 25], [26, 30], [31, 34], [35, 39], [40, 43], [44, 48], [49, 55]]
OFFSETS = [None, None, None, None] + WORD_OFFSETS + [None]


def _logits(n: int, peaks: dict[int, float]) -> np.ndarray:
    row = np.full(n, -10.0)
    for k, v in peaks.items():
        row[k] = v
    return row


def test_known_logits_give_exact_span() -> None:
    n = len(OFFSETS)
    # best legal span: tokens 6..7 = "brown fox"; the question token 1 has the top start logit
    # but lies outside the context, and (9, 5) is reversed: both must be dropped.
    starts = _logits(n, {1: 9.0, 6: 5.0, 9: 4.5})
    ends = _logits(n, {2: 9.0, 7: 5.0, 5: 4.8})
    preds, nbest = postprocess_qa_predictions(
        [{"id": "q1", "context": CONTEXT}], [{"example_id": "q1", "offset_mapping": OFFSETS}], [starts], [ends]
    )
    assert preds == {"q1": "brown fox"}
    assert nbest["q1"][0]["offsets"] == [10, 19]
    assert nbest["q1"][0]["score"] == pytest.approx(10.0)
    assert sum(p["probability"] for p in nbest["q1"]) == pytest.approx(1.0)
    assert all(p["text"] for p in nbest["q1"])


def test_span_longer_than_max_answer_length_is_dropped() -> None:
    n = len(OFFSETS)
    starts = _logits(n, {4: 8.0, 13: 1.0})  # token 4 = "The", token 13 = "near"
    ends = _logits(n, {14: 8.0})            # token 14 = "Paris.": The..Paris. is 11 tokens, near..Paris. 2
    preds, _ = postprocess_qa_predictions(
        [{"id": "q", "context": CONTEXT}], [{"example_id": "q", "offset_mapping": OFFSETS}], [starts], [ends],
        max_answer_length=5,
    )
    assert preds["q"] == "near Paris."


def test_best_span_over_all_features_of_an_example() -> None:
    # two overlapping windows of one example; the second holds the higher-scoring span
    first = {"example_id": "q", "offset_mapping": [None] + WORD_OFFSETS[:6] + [None]}
    second = {"example_id": "q", "offset_mapping": [None] + WORD_OFFSETS[4:] + [None]}
    s1, e1 = _logits(8, {1: 3.0}), _logits(8, {2: 3.0})          # "The quick": 6
    s2, e2 = _logits(9, {4: 4.0}), _logits(9, {5: 4.0})          # second window tokens 4,5 = "lazy dog": 8
    preds, nbest = postprocess_qa_predictions(
        [{"id": "q", "context": CONTEXT}], [first, second], [s1, s2], [e1, e2]
    )
    assert preds["q"] == "lazy dog"
    assert [p["text"] for p in nbest["q"][:2]] == ["lazy dog", "The quick"]


def test_padding_positions_beyond_offsets_are_ignored() -> None:
    starts = np.concatenate([_logits(len(OFFSETS), {8: 2.0}), [50.0, 50.0]])  # padded logits must not win
    ends = np.concatenate([_logits(len(OFFSETS), {8: 2.0}), [50.0, 50.0]])
    preds, _ = postprocess_qa_predictions(
        [{"id": "q", "context": CONTEXT}], [{"example_id": "q", "offset_mapping": OFFSETS}], [starts], [ends]
    )
    assert preds["q"] == "jumps"


def test_no_legal_span_falls_back_to_empty_marker() -> None:
    only_question = [None, [0, 3], None]  # nothing legal if starts/ends land on None
    starts, ends = np.array([5.0, -9, 5.0]), np.array([5.0, -9, 5.0])
    preds, _ = postprocess_qa_predictions(
        [{"id": "q", "context": CONTEXT}], [{"example_id": "q", "offset_mapping": only_question}], [starts], [ends],
        n_best_size=1,
    )
    assert preds["q"] == "empty"


def test_official_normalisation() -> None:
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert normalize_answer("an apple, a pear") == "apple pear"
    assert normalize_answer("theatre") == "theatre"  # articles only as whole words


def test_score_is_max_over_gold_answers() -> None:
    em, f1 = score_one("Denver Broncos", ["Broncos", "the Denver Broncos", "Carolina"])
    assert (em, f1) == (1.0, 1.0)
    em, f1 = score_one("Denver Broncos won", ["Denver Broncos"])
    assert em == 0.0 and f1 == pytest.approx(0.8)  # precision 2/3, recall 1


def test_metric_matches_torchmetrics_squad_and_accumulates() -> None:
    from torchmetrics.text import SQuAD

    preds = ["Denver Broncos", "1976", "in Paris", "nothing like it"]
    golds = [["Denver Broncos", "Broncos"], ["1975"], ["Paris", "in Paris France"], ["Santa Clara"]]
    ours = SquadV1()
    ours.update(preds[:2], golds[:2])
    ours.update(preds[2:], golds[2:])
    result = ours.compute()
    reference = SQuAD()(
        [{"prediction_text": p, "id": str(i)} for i, p in enumerate(preds)],
        [{"answers": {"text": g, "answer_start": [0] * len(g)}, "id": str(i)} for i, g in enumerate(golds)],
    )
    assert float(result["exact_match"]) == pytest.approx(float(reference["exact_match"]))
    assert float(result["f1"]) == pytest.approx(float(reference["f1"]), abs=1e-4)
    assert float(result["exact_match"]) == pytest.approx(25.0)  # only "Denver Broncos" matches exactly


def test_metric_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="2 predictions but 1"):
        SquadV1().update(["a", "b"], [["a"]])
