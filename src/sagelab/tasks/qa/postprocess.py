"""From start/end logits to answer text, and the SQuAD v1.1 exact-match / F1 metric.

:func:`postprocess_qa_predictions` follows ``utils_qa.postprocess_qa_predictions``
of HF's question-answering examples (SQuAD v1.1, no null answers): for every
feature take the ``n_best_size`` best start and end logits, drop pairs outside
the context, reversed or longer than ``max_answer_length`` tokens, score each
span by start + end logit, keep the best over all features of an example, and
cut the answer text from the context with the character offsets.

:class:`SquadV1` is the official ``evaluate-v1.1.py`` scoring (normalisation:
lower case, no punctuation, no articles, single spaces; max over gold answers)
as a torchmetrics ``Metric`` (importing this module imports torch: callers import
it lazily). Its states are float64 sums so that the same
predictions scored in the same order give bit-identical EM/F1, which is what
the single-vs-DDP equality check relies on.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from torchmetrics import Metric

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


# -- official SQuAD v1.1 scoring ---------------------------------------------
def normalize_answer(text: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace (evaluate-v1.1.py)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def f1_score(prediction: str, ground_truth: str) -> float:
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(ground_truth).split()
    common = Counter(pred_tokens) & Counter(gold_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_tokens)
    recall = num_same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def exact_match_score(prediction: str, ground_truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def score_one(prediction: str, gold_answers: Sequence[str]) -> tuple[float, float]:
    """(exact match, F1) of one prediction: the max over its gold answers, each in [0, 1]."""
    if not gold_answers:  # v1.1 always has answers; treat none as unanswerable-but-scored
        return 0.0, 0.0
    em = max(exact_match_score(prediction, g) for g in gold_answers)
    f1 = max(f1_score(prediction, g) for g in gold_answers)
    return em, f1


class SquadV1(Metric):
    """SQuAD v1.1 exact match and F1 in percent, as a torchmetrics ``Metric``.

    ``update(predictions, gold_answers)`` takes answer strings and, per prediction,
    the list of gold answer strings. ``compute()`` returns ``{"exact_match", "f1"}``.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("em_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("f1_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, predictions: Sequence[str], gold_answers: Sequence[Sequence[str]]) -> None:
        if len(predictions) != len(gold_answers):
            raise ValueError(f"{len(predictions)} predictions but {len(gold_answers)} gold answer lists")
        em_total = f1_total = 0.0
        for pred, golds in zip(predictions, gold_answers):
            em, f1 = score_one(pred, golds)
            em_total += em
            f1_total += f1
        self.em_sum += em_total
        self.f1_sum += f1_total
        self.total += len(predictions)

    def compute(self) -> dict[str, Any]:
        if int(self.total) == 0:
            zero = torch.tensor(0.0, dtype=torch.float64)
            return {"exact_match": zero, "f1": zero}
        return {"exact_match": 100.0 * self.em_sum / self.total, "f1": 100.0 * self.f1_sum / self.total}


# -- post-processing -----------------------------------------------------------
def postprocess_qa_predictions(
    examples: Iterable[Mapping[str, Any]],
    features: Sequence[Mapping[str, Any]],
    start_logits: Sequence[np.ndarray],
    end_logits: Sequence[np.ndarray],
    n_best_size: int = 20,
    max_answer_length: int = 30,
) -> tuple[dict[str, str], dict[str, list[dict[str, Any]]]]:
    """Best answer text and n-best list per example id.

    ``features[i]`` needs ``example_id`` and ``offset_mapping`` (``None`` outside the
    context); ``start_logits[i]`` / ``end_logits[i]`` are that feature's logits, of any
    length (positions beyond the feature's offsets, e.g. padding, are ignored).
    """
    if not (len(features) == len(start_logits) == len(end_logits)):
        raise ValueError(
            f"{len(features)} features but {len(start_logits)} start / {len(end_logits)} end logit rows"
        )
    features_per_example: dict[str, list[int]] = {}
    for i, feature in enumerate(features):
        features_per_example.setdefault(feature["example_id"], []).append(i)

    predictions: dict[str, str] = {}
    nbest_json: dict[str, list[dict[str, Any]]] = {}
    for example in examples:
        context = example["context"]
        prelim: list[dict[str, Any]] = []
        for f_idx in features_per_example.get(example["id"], []):
            starts = np.asarray(start_logits[f_idx], dtype=np.float64)
            ends = np.asarray(end_logits[f_idx], dtype=np.float64)
            offsets = features[f_idx]["offset_mapping"]
            # argsort is stable ("stable" kind) so ties break the same way on every run.
            start_idx = np.argsort(starts, kind="stable")[-1 : -n_best_size - 1 : -1].tolist()
            end_idx = np.argsort(ends, kind="stable")[-1 : -n_best_size - 1 : -1].tolist()
            for s in start_idx:
                for e in end_idx:
                    if s >= len(offsets) or e >= len(offsets):
                        continue
                    if offsets[s] is None or len(offsets[s]) < 2 or offsets[e] is None or len(offsets[e]) < 2:
                        continue
                    if e < s or e - s + 1 > max_answer_length:
                        continue
                    prelim.append(
                        {
                            "offsets": (int(offsets[s][0]), int(offsets[e][1])),
                            "score": float(starts[s] + ends[e]),
                            "start_logit": float(starts[s]),
                            "end_logit": float(ends[e]),
                        }
                    )
        best = sorted(prelim, key=lambda p: p["score"], reverse=True)[:n_best_size]
        for pred in best:
            start, end = pred.pop("offsets")
            pred["text"] = context[start:end]
            pred["offsets"] = [start, end]
        if not best or (len(best) == 1 and best[0]["text"] == ""):
            # utils_qa's fallback so that every example has an answer
            best.insert(0, {"text": "empty", "start_logit": 0.0, "end_logit": 0.0, "score": 0.0, "offsets": [0, 0]})
        scores = np.array([p["score"] for p in best])
        probs = np.exp(scores - scores.max())
        probs /= probs.sum()
        for pred, prob in zip(best, probs):
            pred["probability"] = float(prob)
        predictions[example["id"]] = best[0]["text"]
        nbest_json[example["id"]] = best
    return predictions, nbest_json
