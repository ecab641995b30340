"""Leakage and sampling checks on the data itself, before any model is trusted.

* duplicates: evaluation texts also in the training set -- exactly after normalising (case, punctuation,
  spacing, Unicode form) or nearly (cosine of hashed character 4-gram vectors, sklearn's
  ``HashingVectorizer``; the training side is sampled down to a bound so SST-2's 67k x 872 stays seconds);
* shortcuts: a label that one token's presence, or the text's length, predicts -- measured as the balanced
  accuracy of "token present" (0.5 = no information, 1.0 = the token is the label) and the AUC of the length;
* class balance: the share of positives in training vs evaluation.

None of this needs a model, so a planted leak is found even when the model has learnt nothing.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Sequence

import numpy as np

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)
TOKEN_PATTERN = r"(?u)\b\w+\b"


def normalise(text: str) -> str:
    """Lower case, NFKC, punctuation and runs of spaces folded to one space."""
    return _NON_WORD.sub(" ", unicodedata.normalize("NFKC", text).lower()).strip()


def exact_duplicates(train_texts: Sequence[str], train_labels: Sequence[int], eval_texts: Sequence[str],
                     eval_labels: Sequence[int]) -> list[dict[str, Any]]:
    """Evaluation examples whose normalised text is also a training text, with both sides' labels."""
    seen: dict[str, list[int]] = {}
    for i, text in enumerate(train_texts):
        seen.setdefault(normalise(text), []).append(i)
    found = []
    for i, text in enumerate(eval_texts):
        key = normalise(text)
        if key and key in seen:
            labels = sorted({int(train_labels[j]) for j in seen[key]})
            found.append({"eval_index": i, "text": text, "eval_label": int(eval_labels[i]),
                          "train_indices": seen[key][:5], "train_copies": len(seen[key]), "train_labels": labels,
                          "same_label": labels == [int(eval_labels[i])]})
    return found


def near_duplicates(train_texts: Sequence[str], eval_texts: Sequence[str], threshold: float, max_train: int,
                    seed: int, skip: set[int] = frozenset(), chunk: int = 8192) -> dict[str, Any]:
    """Evaluation texts whose closest training text (cosine of character 4-gram vectors) reaches ``threshold``;
    exact duplicates (``skip``) are left out. At most ``max_train`` training texts are compared (a seeded sample)."""
    from sklearn.feature_extraction.text import HashingVectorizer

    train_idx = np.arange(len(train_texts))
    if len(train_idx) > max_train:
        train_idx = np.sort(np.random.default_rng(seed).choice(train_idx, max_train, replace=False))
    vectorize = HashingVectorizer(analyzer="char_wb", ngram_range=(4, 4), n_features=2**20, alternate_sign=False,
                                  norm="l2", preprocessor=normalise)
    queries = vectorize.transform(list(eval_texts))
    best, where = np.zeros(len(eval_texts)), np.zeros(len(eval_texts), dtype=int)
    for start in range(0, len(train_idx), chunk):
        part = train_idx[start:start + chunk]
        sims = (queries @ vectorize.transform([train_texts[j] for j in part]).T).toarray()
        col = sims.argmax(axis=1)
        top = sims[np.arange(len(col)), col]
        better = top > best
        best[better], where[better] = top[better], part[col[better]]
    ranked = [{"eval_index": int(i), "text": eval_texts[i], "train_index": int(where[i]),
               "train_text": train_texts[where[i]], "cosine": float(best[i])}
              for i in np.argsort(-best, kind="stable") if int(i) not in skip]
    return {"compared_train": int(len(train_idx)), "threshold": float(threshold),
            "pairs": [p for p in ranked if p["cosine"] >= threshold], "closest": ranked[:5]}


def token_shortcuts(train_texts: Sequence[str], train_labels: Sequence[int], eval_texts: Sequence[str],
                    eval_labels: Sequence[int], min_count: int, top_k: int) -> list[dict[str, Any]]:
    """Tokens ranked by how well their presence alone predicts the label in the training set (balanced accuracy
    of "present -> the class it favours"), with the same rates on the evaluation set as evidence."""
    from sklearn.feature_extraction.text import CountVectorizer

    y = np.asarray(train_labels, dtype=int)
    vectorizer = CountVectorizer(binary=True, lowercase=True, token_pattern=TOKEN_PATTERN,
                                 min_df=min(int(min_count), max(1, len(y) // 2)))
    try:
        present = vectorizer.fit_transform(train_texts)
    except ValueError:  # no token occurs min_count times
        return []
    pos = np.asarray(present[y == 1].sum(axis=0)).ravel() / max(1, int(np.sum(y == 1)))
    neg = np.asarray(present[y == 0].sum(axis=0)).ravel() / max(1, int(np.sum(y == 0)))
    strength = 0.5 + np.abs(pos - neg) / 2
    e = np.asarray(eval_labels, dtype=int)
    eval_present = vectorizer.transform(eval_texts)
    eval_pos = np.asarray(eval_present[e == 1].sum(axis=0)).ravel() / max(1, int(np.sum(e == 1)))
    eval_neg = np.asarray(eval_present[e == 0].sum(axis=0)).ravel() / max(1, int(np.sum(e == 0)))
    vocab = vectorizer.get_feature_names_out()
    return [{"token": str(vocab[j]), "balanced_accuracy": float(strength[j]), "favours": int(pos[j] > neg[j]),
             "train": {"in_class_1": float(pos[j]), "in_class_0": float(neg[j])},
             "eval": {"in_class_1": float(eval_pos[j]), "in_class_0": float(eval_neg[j]),
                      "balanced_accuracy": float(0.5 + abs(eval_pos[j] - eval_neg[j]) / 2)}}
            for j in np.argsort(-strength, kind="stable")[:top_k]]


def length_shortcut(texts: Sequence[str], labels: Sequence[int]) -> dict[str, float]:
    """How well the length in words alone ranks the classes: AUC, and its strength max(AUC, 1 - AUC)."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(labels, dtype=int)
    lengths = np.array([len(t.split()) for t in texts], dtype=float)
    if len(np.unique(y)) < 2:
        return {"auc": float("nan"), "strength": float("nan"), "mean_words_1": float("nan"),
                "mean_words_0": float("nan")}
    auc = float(roc_auc_score(y, lengths))
    return {"auc": auc, "strength": max(auc, 1 - auc), "mean_words_1": float(lengths[y == 1].mean()),
            "mean_words_0": float(lengths[y == 0].mean())}


def data_checks(train_texts: Sequence[str], train_labels: Sequence[int], eval_texts: Sequence[str],
                eval_labels: Sequence[int], cfg: Any) -> dict[str, Any]:
    """All checks, and the warnings they raise (each with its evidence)."""
    exact = exact_duplicates(train_texts, train_labels, eval_texts, eval_labels)
    near = near_duplicates(train_texts, eval_texts, float(cfg.near_duplicate_threshold),
                           int(cfg.near_duplicate_max_train), int(cfg.bootstrap_seed),
                           skip={d["eval_index"] for d in exact})
    tokens = token_shortcuts(train_texts, train_labels, eval_texts, eval_labels, int(cfg.token_min_count),
                             int(cfg.top_k))
    length = {"train": length_shortcut(train_texts, train_labels), "eval": length_shortcut(eval_texts, eval_labels)}
    balance = {"train_positive_share": float(np.mean(train_labels)), "eval_positive_share": float(np.mean(eval_labels)),
               "train_examples": len(train_texts), "eval_examples": len(eval_texts)}
    warnings, cut = [], float(cfg.shortcut_strength)
    if exact:
        warnings.append({"kind": "duplicates", "message": f"{len(exact)} evaluation text(s) also in the training set "
                         f"(normalised exact match), e.g. {exact[0]['text']!r}.", "evidence": exact[:5]})
    if near["pairs"]:
        warnings.append({"kind": "near_duplicates", "message": f"{len(near['pairs'])} more evaluation text(s) have a "
                         f"training text with cosine >= {near['threshold']:g}.", "evidence": near["pairs"][:5]})
    for row in [t for t in tokens if t["balanced_accuracy"] >= cut]:
        warnings.append({"kind": "possible_leakage", "message": f"the token {row['token']!r} alone predicts class "
                         f"{row['favours']} (balanced accuracy {row['balanced_accuracy']:.3f} on train, "
                         f"{row['eval']['balanced_accuracy']:.3f} on evaluation): in {row['train']['in_class_1']:.0%} "
                         f"of class-1 and {row['train']['in_class_0']:.0%} of class-0 training texts.",
                         "evidence": row})
    for split, row in length.items():
        if row["strength"] >= cut:
            warnings.append({"kind": "length_predicts_label", "message": f"text length alone ranks the {split} labels "
                             f"with AUC {row['auc']:.3f}.", "evidence": row})
    gap = abs(balance["train_positive_share"] - balance["eval_positive_share"])
    if gap > float(cfg.balance_tolerance):
        warnings.append({"kind": "class_balance", "message": f"positives are {balance['train_positive_share']:.1%} of "
                         f"training and {balance['eval_positive_share']:.1%} of evaluation examples.",
                         "evidence": balance})
    return {"exact_duplicates": exact, "near_duplicates": near, "token_shortcuts": tokens, "length": length,
            "class_balance": balance, "warnings": warnings}
