"""Character spans <-> BIO tags on a fast tokenizer's words, over overlapping windows.

Tags live on *words* as the tokenizer's pre-tokenizer splits the text (whitespace and punctuation for BERT):
the first sub-token of a word carries the word's tag, continuations and special tokens carry -100, as in HF's
token-classification examples. A word's character span is the union of its sub-tokens' offsets, widened over
characters the normaliser dropped (a combining accent, a zero-width joiner), so the spans decoded from tags
are exactly the text an annotator marked. A text longer than ``max_length`` tokens is cut into windows that
overlap by ``stride`` tokens; a word seen in several windows takes the prediction of the window where it has
the most context on both sides (the rule of BERT's SQuAD code).

An entity boundary inside a word (an entity "Paris" in "Paris😀", one word for BERT) cannot be represented: the
entity widens to whole words and is counted as misaligned. Overlapping entities, which Ground Truth allows,
cannot be BIO-tagged either: the first one (by start) is kept and the rest are counted.

No torch here; the tokenizer is any ``transformers`` fast tokenizer.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Mapping, Sequence

from sagelab.models import MODEL_INPUTS
from sagelab.tasks.ner.manifest import Document, Entity

IGNORE = -100  # the label of a position that is not the first sub-token of a word (HF's ignore index)
Spans = dict[int, tuple[int, int]]  # word id -> (start, end) in code points


def tag_names(labels: Sequence[str]) -> list[str]:
    """``O`` then ``B-<label>``, ``I-<label>`` for each label: the classifier's outputs, in order."""
    return ["O", *(f"{prefix}-{label}" for label in labels for prefix in "BI")]


def chunks(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """(label, first, last) of each entity of a BIO sequence, read as conlleval reads it: an ``I-x`` that does
    not continue an ``x`` starts one. seqeval's default mode and the WNUT-17 scores count entities the same way."""
    found: list[tuple[str, int, int]] = []
    current: list[Any] | None = None
    for i, tag in enumerate(tags):
        prefix, _, label = tag.partition("-")
        if prefix == "I" and current is not None and current[0] == label:
            current[2] = i
            continue
        if current is not None:
            found.append((current[0], current[1], current[2]))
        current = [label, i, i] if prefix in ("B", "I") else None
    if current is not None:
        found.append((current[0], current[1], current[2]))
    return found


def word_spans(text: str, pieces: Iterable[tuple[int, int, int]]) -> Spans:
    """Each word's character span from its sub-tokens' ``(word, start, end)``, its end widened over the
    characters up to the next word or whitespace that no token covers (removed by the normaliser)."""
    spans: Spans = {}
    for word, start, end in pieces:
        low, high = spans.get(word, (start, end))
        spans[word] = (min(low, start), max(high, end))
    order = sorted(spans)
    for k, word in enumerate(order):
        start, end = spans[word]
        limit = spans[order[k + 1]][0] if k + 1 < len(order) else len(text)
        while end < limit and not text[end].isspace():
            end += 1
        spans[word] = (start, end)
    return spans


def encode(tokenizer: Any, texts: Sequence[str], max_length: int, stride: int) -> tuple[list[dict], list[Spans]]:
    """Windows of model inputs, each with ``words`` (the word id at a word's first sub-token, else -100),
    ``doc`` (index into ``texts``) and ``window`` (its number); and the word spans of every text."""
    enc = tokenizer(list(texts), truncation=True, max_length=max_length, stride=stride,
                    return_overflowing_tokens=True, return_offsets_mapping=True)
    owners = enc["overflow_to_sample_mapping"]
    pieces: list[list[tuple[int, int, int]]] = [[] for _ in texts]
    for w, doc in enumerate(owners):
        pieces[doc].extend((word, s, e) for word, (s, e) in zip(enc.word_ids(w), enc["offset_mapping"][w])
                           if word is not None)
    spans = [word_spans(text, p) for text, p in zip(texts, pieces)]
    windows = []
    for w, doc in enumerate(owners):
        firsts = [word if word is not None and s == spans[doc][word][0] else IGNORE
                  for word, (s, _) in zip(enc.word_ids(w), enc["offset_mapping"][w])]
        windows.append({**{k: enc[k][w] for k in MODEL_INPUTS if k in enc}, "words": firsts, "doc": doc, "window": w})
    return windows, spans


def word_tags(spans: Spans, entities: Sequence[Entity], index: Mapping[str, int]) -> tuple[dict[int, int], Counter]:
    """The tag id of every word, from character-span entities; counts ``misaligned`` and ``overlapping`` ones."""
    tags = dict.fromkeys(spans, index["O"])
    problems: Counter = Counter()
    for entity in sorted(entities):
        inside = [w for w, (s, e) in sorted(spans.items()) if s < entity.end and e > entity.start]
        if not inside or any(tags[w] != index["O"] for w in inside):
            problems["overlapping" if inside else "misaligned"] += 1
            continue
        tags[inside[0]] = index[f"B-{entity.label}"]
        tags.update({w: index[f"I-{entity.label}"] for w in inside[1:]})
        if (spans[inside[0]][0], spans[inside[-1]][1]) != (entity.start, entity.end):
            problems["misaligned"] += 1
    return tags, problems


def encode_labelled(tokenizer: Any, documents: Sequence[Document], labels: Sequence[str], max_length: int,
                    stride: int) -> tuple[list[dict], Counter]:
    """Windows of labelled documents with ``labels`` (a tag id at each word's first sub-token, else -100)."""
    index = {name: i for i, name in enumerate(tag_names(labels))}
    windows, spans = encode(tokenizer, [d.source for d in documents], max_length, stride)
    tags, problems = [], Counter()
    for document, words in zip(documents, spans):
        found, counts = word_tags(words, document.entities, index)
        tags.append(found)
        problems.update(counts)
    for window in windows:
        window["labels"] = [tags[window["doc"]][w] if w != IGNORE else IGNORE for w in window["words"]]
    return windows, problems


def merge_windows(rows: Iterable[tuple[int, int, int, int, Any]]) -> dict[int, dict[int, Any]]:
    """``{doc: {word: payload}}`` from ``(doc, word, context, window, payload)`` rows in any order: each word
    keeps the payload of the window that gave it the most context (ties: the earlier window)."""
    best: dict[tuple[int, int], tuple[tuple[int, int], Any]] = {}
    for doc, word, context, window, payload in rows:
        rank = (context, -window)
        if (doc, word) not in best or rank > best[doc, word][0]:
            best[doc, word] = (rank, payload)
    merged: dict[int, dict[int, Any]] = {}
    for (doc, word), (_, payload) in best.items():
        merged.setdefault(doc, {})[word] = payload
    return merged


def decode(spans: Spans, tags: Mapping[int, str], scores: Mapping[int, float]) -> list[tuple[Entity, float]]:
    """Entities (character spans) and their mean word probability from the tags of a text's words."""
    order = sorted(spans)
    found = []
    for label, first, last in chunks([tags.get(w, "O") for w in order]):
        words = order[first : last + 1]
        confidence = sum(scores.get(w, 0.0) for w in words) / len(words)
        found.append((Entity(spans[words[0]][0], spans[words[-1]][1], label), confidence))
    return found
