"""'Variable importance' for a text classifier: which words move its score, over the evaluation set.

Integrated gradients (Captum's ``LayerIntegratedGradients``) on the input embedding layer of a Hugging Face
sequence classifier: the path runs from a baseline where every ordinary token is the padding token (special
tokens kept) to the text, and the attributed output is the log-odds of class 1 (logit 1 - logit 0), so a
word's attribution is how much of the score's distance from "no words" it carries. Word pieces are summed
into the words of the original text (the tokenizer's ``word_ids`` and character offsets), and words are then
aggregated over a bounded, seeded sample of evaluation examples.

Integrated gradients over occlusion: at a similar cost (``steps`` forward and backward passes per example,
against one forward pass per word), its attributions add up to the log-odds gap from the baseline
(completeness), so words of one example compare on one scale. Gradients run in fp32: autocast's bf16 would
blur small attributions. The cost is the mode's largest: ``diagnose.attribution_examples`` bounds it.
"""

from __future__ import annotations

from typing import Any, Sequence


def integrated_gradients(model: Any, tokenizer: Any, fields: Sequence[Sequence[str]], max_length: int,
                         steps: int, batch_size: int = 8) -> list[list[tuple[str, float]]]:
    """Per example (``fields``: one list of texts per text field), its words with their attribution toward class 1."""
    import torch
    from captum.attr import LayerIntegratedGradients

    model.eval()
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)))

    def log_odds(input_ids: Any, attention_mask: Any, *token_type_ids: Any) -> Any:
        extra = {"token_type_ids": token_type_ids[0]} if token_type_ids else {}
        logits = model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits.float()
        return logits[:, 1] - logits[:, 0]

    explainer = LayerIntegratedGradients(log_odds, model.get_input_embeddings())
    # longest first in batches of similar length: every interpolation step pays for the padding
    order = sorted(range(len(fields[0])), key=lambda i: sum(len(f[i]) for f in fields), reverse=True)
    results: list[list[tuple[str, float]]] = [[] for _ in order]
    for start in range(0, len(order), batch_size):
        positions = order[start:start + batch_size]
        texts = [[f[i] for i in positions] for f in fields]
        enc = tokenizer(*texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt",
                        return_offsets_mapping=True)
        ids = enc["input_ids"]
        baseline = torch.where(torch.isin(ids, special), ids, tokenizer.pad_token_id)
        extra = (enc["attention_mask"], *([enc["token_type_ids"]] if "token_type_ids" in enc else []))
        with torch.autocast("cpu", enabled=False):
            scores = explainer.attribute(ids, baselines=baseline, additional_forward_args=extra,
                                         n_steps=int(steps)).sum(-1)
        for row, i in enumerate(positions):
            results[i] = _words(enc, row, [t[row] for t in texts], scores[row].tolist())
    return results


def _words(enc: Any, row: int, texts: list[str], token_scores: list[float]) -> list[tuple[str, float]]:
    """Word pieces of one example summed into the words of its texts, in order."""
    spans: dict[tuple[int, int], list[float]] = {}  # (sequence, word) -> [start, end, attribution]
    offsets = enc["offset_mapping"][row].tolist()
    for position, (sequence, word) in enumerate(zip(enc.sequence_ids(row), enc.word_ids(row))):
        if sequence is None or word is None:
            continue
        start, end = offsets[position]
        span = spans.setdefault((sequence, word), [start, end, 0.0])
        span[0], span[1], span[2] = min(span[0], start), max(span[1], end), span[2] + token_scores[position]
    return [(texts[seq][int(s):int(e)], score) for (seq, _), (s, e, score) in sorted(spans.items())]


def top_words(examples: Sequence[Sequence[tuple[str, float]]], top_k: int, min_count: int = 3) -> dict[str, list]:
    """Words ranked by their mean attribution over ``examples``: toward class 1 (largest) and toward class 0
    (most negative), each with its count and total. Words seen fewer than ``min_count`` times are left out
    while enough others remain (a word seen once ranks on one example); ranking by the total instead would put
    "a", "of" and "." first, which carry little each but occur everywhere."""
    totals: dict[str, list[float]] = {}
    for words in examples:
        for word, score in words:
            entry = totals.setdefault(word.lower(), [0.0, 0])
            entry[0] += score
            entry[1] += 1
    frequent = {w: v for w, v in totals.items() if v[1] >= min_count}
    pool = frequent if len(frequent) >= 2 * top_k else totals
    rows = [{"word": w, "mean": t / c, "count": int(c), "total": t} for w, (t, c) in pool.items()]
    rows.sort(key=lambda r: r["mean"])
    return {"toward_1": [r for r in reversed(rows[-top_k:]) if r["mean"] > 0],
            "toward_0": [r for r in rows[:top_k] if r["mean"] < 0]}
