"""A SQuAD v1.1 JSON file, read and checked whole before ``datasets`` sees it.

``datasets.Dataset.from_generator`` runs the reading generator inside its builder and wraps whatever it
raises in a ``DatasetGenerationError`` traceback, so the file is checked here first: every fault is one
:class:`~sagelab.config.ConfigError` on ``task.source`` naming the file and the place -- the line for
encoding and JSON faults, ``article i paragraph j question k`` for the shape (the parsed JSON has no lines).
"""

from __future__ import annotations

import json
from typing import Any

from sagelab.config import ConfigError
from sagelab.readers.jsonl import decode_json
from sagelab.readers.lines import BadInput, read_utf8


def _fault(path: str, where: str | None, what: str) -> ConfigError:
    return ConfigError("task.source", f"{path}: {where + ': ' if where else ''}{what}.")


def _load(path: str) -> Any:
    try:
        text = read_utf8(path)
    except BadInput as err:
        raise _fault(path, f"line {err.bad.line}", err.bad.reason) from None
    if not text.strip():
        raise _fault(path, None, "the file is empty, not a SQuAD v1.1 file")
    try:
        return decode_json(text)
    except json.JSONDecodeError as err:
        raise _fault(path, f"line {err.lineno}", f"not valid JSON ({err.msg})") from None
    except ValueError as err:  # nested deeper than the parser goes: no position to report
        raise _fault(path, None, f"not valid JSON ({err})") from None


def _items(value: Any, path: str, where: str, name: str) -> list[Any]:
    if not isinstance(value, list):
        raise _fault(path, where, f"'{name}' is a {type(value).__name__}, not a list")
    return value


def _answers(qa: dict[str, Any], context: str, path: str, where: str) -> dict[str, list]:
    texts, starts = [], []
    for n, answer in enumerate(_items(qa.get("answers", []), path, where, "answers")):
        text, start = (answer.get("text"), answer.get("answer_start")) if isinstance(answer, dict) else (None, None)
        if not isinstance(text, str) or not text:
            raise _fault(path, f"{where} answer {n}", "missing or empty 'text'")
        if not isinstance(start, int) or isinstance(start, bool) or start < 0:
            raise _fault(path, f"{where} answer {n}", f"'answer_start' is {start!r}, not a character position")
        if context[start : start + len(text)] != text:
            raise _fault(path, f"{where} answer {n}", f"{text!r} is not at character {start} of the context")
        texts.append(text)
        starts.append(start)
    return {"text": texts, "answer_start": starts}


def read_squad_json(path: str) -> list[dict[str, Any]]:
    """Flat examples (``id, title, context, question, answers``) of a SQuAD v1.1 file; question ids unique."""
    payload = _load(path)
    articles = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(articles, list):
        raise _fault(path, None, "no top-level 'data' list: not a SQuAD v1.1 file")
    examples: list[dict[str, Any]] = []
    seen: dict[str, str] = {}  # question id -> where it was first
    for a, article in enumerate(articles):
        if not isinstance(article, dict):
            raise _fault(path, f"article {a}", "not a JSON object")
        title = str(article.get("title", f"article_{a}"))
        for p, paragraph in enumerate(_items(article.get("paragraphs", []), path, f"article {a}", "paragraphs")):
            where = f"article {a} ({title}) paragraph {p}"
            context = paragraph.get("context") if isinstance(paragraph, dict) else None
            if not isinstance(context, str) or not context.strip():
                raise _fault(path, where, "missing or empty 'context'")
            for q, qa in enumerate(_items(paragraph.get("qas", []), path, where, "qas")):
                place = f"{where} question {q}"
                if not isinstance(qa, dict) or not isinstance(qa.get("question"), str) or "id" not in qa:
                    raise _fault(path, place, "a question needs an 'id' and a 'question' string")
                qid = str(qa["id"])
                if qid in seen:
                    raise _fault(path, place, f"question id {qid!r} is already used at {seen[qid]}")
                seen[qid] = place
                examples.append({"id": qid, "title": title, "context": context, "question": qa["question"],
                                 "answers": _answers(qa, context, path, place)})
    if not examples:
        raise _fault(path, None, "no questions in 'data'")
    return examples
