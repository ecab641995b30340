"""SQuAD v1.1 reading, article-level splitting and run_qa.py-style tokenisation.

Everything here produces Hugging Face ``datasets.Dataset`` objects backed by Arrow
files under a cache folder, so ``Dataset.map`` caching works: the second run of
the same command (same file, tokenizer, ``max_seq_length``, ``doc_stride``)
loads the tokenised features from disk instead of tokenising again.

Examples have the hub ``squad`` schema: ``id, title, context, question,
answers{text, answer_start}``. Training features carry ``start_positions`` /
``end_positions``; evaluation features carry ``example_id`` and an
``offset_mapping`` whose non-context entries are ``None``, exactly as in HF's
``run_qa.py`` (``prepare_train_features`` / ``prepare_validation_features``).
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from sagelab.config import ConfigError

if TYPE_CHECKING:
    import datasets

#: bump when the feature layout changes, so stale caches are not reused
PREPROCESS_VERSION = 1
from sagelab.models import MODEL_INPUTS  # noqa: F401  (re-exported: the QA modules select these columns)


# -- reading ---------------------------------------------------------------
def looks_like_path(source: str) -> bool:
    """A missing local file, as opposed to a hub name such as ``squad`` or ``rajpurkar/squad``."""
    return source.endswith((".json", ".jsonl")) or source.startswith((".", "/", "~")) or source.count("/") > 1


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_squad(source: str, cache_dir: str | None = None, hub_splits: Sequence[str] = ("validation",)) -> datasets.Dataset:
    """All examples of ``source``: a local SQuAD v1.1 JSON file, or a hub dataset name.

    A local file becomes an Arrow dataset keyed by its content hash (edits invalidate the
    cache); a hub name is read with ``datasets.load_dataset`` and the listed splits are
    concatenated, so the article split below applies the same way to both.
    """
    import datasets

    from sagelab.tasks.qa.squad_json import read_squad_json

    path = Path(source)
    if path.exists():
        examples = read_squad_json(str(path))  # checked whole here: datasets would wrap a fault in a traceback
        return datasets.Dataset.from_generator(
            lambda: iter(examples),
            cache_dir=cache_dir,
            fingerprint=f"squad-{_file_sha256(path)[:16]}",
        )
    if looks_like_path(source):
        raise ConfigError("task.source", f"the file '{source}' does not exist.")
    parts = [datasets.load_dataset(source, split=split, cache_dir=cache_dir) for split in hub_splits]
    missing = {"id", "title", "context", "question", "answers"} - set(parts[0].column_names)
    if missing:
        raise ConfigError("task.source", f"hub dataset '{source}' lacks SQuAD columns {sorted(missing)}.")
    return datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]


# -- splitting -------------------------------------------------------------
def split_by_article(
    examples: datasets.Dataset,
    train_articles: int | None,
    eval_articles: int,
    seed: int | None = None,
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Split examples by article title (never by question, which would leak contexts).

    Articles keep file order unless ``seed`` is given (then they are shuffled with it);
    the last ``eval_articles`` are held out and ``train_articles`` (default: all the
    rest) come from the front.
    """
    titles = examples["title"]
    order = list(dict.fromkeys(titles))
    if seed is not None:
        random.Random(seed).shuffle(order)
    n_train = len(order) - eval_articles if train_articles is None else train_articles
    if eval_articles < 1 or n_train < 1 or n_train + eval_articles > len(order):
        raise ConfigError(
            "task.train_articles",
            f"{n_train} training + {eval_articles} evaluation articles do not fit the {len(order)} "
            "articles of the data.",
        )
    train_set, eval_set = set(order[:n_train]), set(order[len(order) - eval_articles :])
    train_idx = [i for i, t in enumerate(titles) if t in train_set]
    eval_idx = [i for i, t in enumerate(titles) if t in eval_set]
    return examples.select(train_idx), examples.select(eval_idx)


# -- tokenisation (run_qa.py semantics) --------------------------------------
def _tokenize(
    examples: dict[str, list], tokenizer: Any, max_seq_length: int, doc_stride: int, padding: bool | str = False
) -> Any:
    pad_on_right = tokenizer.padding_side == "right"
    # Some questions carry leading whitespace that wastes window space (run_qa.py strips it too).
    questions = [q.lstrip() for q in examples["question"]]
    first, second = (questions, examples["context"]) if pad_on_right else (examples["context"], questions)
    return tokenizer(
        first,
        second,
        truncation="only_second" if pad_on_right else "only_first",
        max_length=max_seq_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding=padding,
    )


def _cls_index(input_ids: list[int], tokenizer: Any) -> int:
    if tokenizer.cls_token_id in input_ids:
        return input_ids.index(tokenizer.cls_token_id)
    if tokenizer.bos_token_id in input_ids:
        return input_ids.index(tokenizer.bos_token_id)
    return 0


def prepare_train_features(
    examples: dict[str, list], tokenizer: Any, max_seq_length: int, doc_stride: int, padding: bool | str = False
) -> dict:
    """Windows of ``max_seq_length`` tokens with answer start/end token positions.

    ``padding=False`` leaves padding to the batch collator (dynamic padding);
    ``"max_length"`` is run_qa.py's default and pads every window to ``max_seq_length``.

    A window that does not contain the (first) gold answer points both positions at the
    CLS token, as in run_qa.py.
    """
    pad_on_right = tokenizer.padding_side == "right"
    context_seq = 1 if pad_on_right else 0
    enc = _tokenize(examples, tokenizer, max_seq_length, doc_stride, padding)
    sample_mapping = enc.pop("overflow_to_sample_mapping")
    offset_mapping = enc.pop("offset_mapping")
    starts, ends = [], []
    for i, offsets in enumerate(offset_mapping):
        input_ids = enc["input_ids"][i]
        cls_index = _cls_index(input_ids, tokenizer)
        sequence_ids = enc.sequence_ids(i)
        answers = examples["answers"][sample_mapping[i]]
        if len(answers["answer_start"]) == 0:
            starts.append(cls_index)
            ends.append(cls_index)
            continue
        start_char = answers["answer_start"][0]
        end_char = start_char + len(answers["text"][0])
        token_start = 0
        while sequence_ids[token_start] != context_seq:
            token_start += 1
        token_end = len(input_ids) - 1
        while sequence_ids[token_end] != context_seq:
            token_end -= 1
        if not (offsets[token_start][0] <= start_char and offsets[token_end][1] >= end_char):
            starts.append(cls_index)
            ends.append(cls_index)
            continue
        while token_start < len(offsets) and offsets[token_start][0] <= start_char:
            token_start += 1
        starts.append(token_start - 1)
        while offsets[token_end][1] >= end_char:
            token_end -= 1
        ends.append(token_end + 1)
    out = {k: enc[k] for k in MODEL_INPUTS if k in enc}
    out["start_positions"] = starts
    out["end_positions"] = ends
    return out


def prepare_eval_features(
    examples: dict[str, list], tokenizer: Any, max_seq_length: int, doc_stride: int, padding: bool | str = False
) -> dict:
    """Windows mapped back to their example (``example_id``) with context-only offsets."""
    context_seq = 1 if tokenizer.padding_side == "right" else 0
    enc = _tokenize(examples, tokenizer, max_seq_length, doc_stride, padding)
    sample_mapping = enc.pop("overflow_to_sample_mapping")
    example_ids, offsets_out = [], []
    for i, offsets in enumerate(enc["offset_mapping"]):
        sequence_ids = enc.sequence_ids(i)
        example_ids.append(examples["id"][sample_mapping[i]])
        # None marks tokens outside the context, so post-processing never returns a span there.
        offsets_out.append([list(o) if sequence_ids[k] == context_seq else None for k, o in enumerate(offsets)])
    out = {k: enc[k] for k in MODEL_INPUTS if k in enc}
    out["example_id"] = example_ids
    out["offset_mapping"] = offsets_out
    return out


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A stable hash of the tokenizer's vocabulary and rules (not its mutable truncation state)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        state.pop("truncation", None)
        state.pop("padding", None)
        text = json.dumps(state, sort_keys=True)
    else:
        text = json.dumps(sorted(tokenizer.get_vocab().items()))
    text += f"|{type(tokenizer).__name__}|{tokenizer.padding_side}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def tokenize_split(
    examples: datasets.Dataset,
    tokenizer: Any,
    max_seq_length: int,
    doc_stride: int,
    train: bool,
    num_proc: int | None = None,
    padding: bool | str = False,
) -> datasets.Dataset:
    """Tokenise ``examples`` into features, reusing the on-disk cache when nothing changed.

    The fingerprint is explicit (parent data + tokenizer + lengths + version) because the
    default one hashes the tokenizer object, whose state changes once it has been called.
    """
    from datasets.fingerprint import Hasher

    if doc_stride >= max_seq_length:
        raise ConfigError("task.doc_stride", f"({doc_stride}) must be smaller than task.max_seq_length ({max_seq_length}).")
    fn = prepare_train_features if train else prepare_eval_features
    fingerprint = Hasher.hash(
        [examples._fingerprint, tokenizer_fingerprint(tokenizer), max_seq_length, doc_stride, train, padding,
         PREPROCESS_VERSION]
    )
    return examples.map(
        fn,
        batched=True,
        remove_columns=examples.column_names,
        fn_kwargs={"tokenizer": tokenizer, "max_seq_length": max_seq_length, "doc_stride": doc_stride,
                   "padding": padding},
        new_fingerprint=fingerprint,
        num_proc=num_proc,
        desc=f"tokenising {'train' if train else 'eval'} features",
    )
