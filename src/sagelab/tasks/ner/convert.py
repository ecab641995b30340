"""CoNLL BIO files (WNUT-17) -> SageMaker Ground Truth NER output manifests.

    python -m sagelab.tasks.ner.convert <folder with the CoNLL files> data/ner/wnut17 \\
        --split train=wnut17train.conll --split dev=emerging.dev.conll --split test=emerging.test.annotated

Each sentence (tokens one a line, ``token<TAB>tag``, sentences separated by blank or whitespace-only lines)
becomes one document: ``source`` is its tokens joined with single spaces, and every BIO entity becomes a
Ground Truth entity whose ``startOffset``/``endOffset`` count code points of that text (``source[start:end]``
is the entity's tokens, space-joined). The originals' tokenisation is therefore recoverable with
``source.split(" ")`` (WNUT-17 tokens hold no spaces). Entities are read as conlleval reads BIO (an ``I-x``
that continues nothing starts an entity), which is how the shared task scored them.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Iterator

from sagelab.tasks.ner.manifest import Entity, labelled, write_manifest
from sagelab.tasks.ner.tagging import chunks

WNUT17_LABELS = ("corporation", "creative-work", "group", "location", "person", "product")


def read_conll(path: Path) -> Iterator[tuple[list[str], list[str]]]:
    """(tokens, tags) per sentence; a line that is not ``token<TAB>tag`` stops with its file and line."""
    tokens: list[str] = []
    tags: list[str] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                if tokens:
                    yield tokens, tags
                tokens, tags = [], []
                continue
            token, sep, tag = line.rpartition("\t")
            if not sep or not token or " " in token or not (tag == "O" or tag[:2] in ("B-", "I-")):
                raise ValueError(f"{path}:{number}: expected 'token<TAB>O|B-x|I-x', got {line!r}")
            tokens.append(token)
            tags.append(tag)
    if tokens:
        yield tokens, tags


def sentence_entities(tokens: list[str], tags: list[str]) -> tuple[str, list[Entity]]:
    """The space-joined text and its entities, in code points."""
    starts, position = [], 0
    for token in tokens:
        starts.append(position)
        position += len(token) + 1
    text = " ".join(tokens)
    return text, [Entity(starts[a], starts[b] + len(tokens[b]), label) for label, a, b in chunks(tags)]


def convert(source: Path, out: Path, attribute: str, labels: tuple[str, ...], job_name: str,
            created: str) -> Counter:
    """One manifest for ``source``; returns the counts of documents and of entities per label."""
    counts: Counter = Counter()
    records = []
    for tokens, tags in read_conll(source):
        text, entities = sentence_entities(tokens, tags)
        unknown = sorted({e.label for e in entities} - set(labels))
        if unknown:
            raise ValueError(f"{source}: label(s) {', '.join(unknown)} not in --labels")
        counts["documents"] += 1
        counts.update(e.label for e in entities)
        records.append(labelled({"source": text}, attribute, labels, entities, [1.0] * len(entities), job_name,
                                human=True, created=created))
    write_manifest(out, records)
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="folder holding the CoNLL files")
    parser.add_argument("out", type=Path, help="folder for <split>.manifest")
    parser.add_argument("--split", action="append", metavar="NAME=FILE", required=True,
                        help="a split and its CoNLL file, e.g. train=wnut17train.conll (repeatable)")
    parser.add_argument("--attribute", default="wnut17", help="the label attribute name (default: wnut17)")
    parser.add_argument("--labels", default=",".join(WNUT17_LABELS), help="comma-separated entity labels")
    parser.add_argument("--job-name", default="labeling-job/wnut17", help="metadata job-name")
    parser.add_argument("--creation-date", required=True,
                        help="metadata creation-date (ISO 8601), fixed so that a re-run gives the same bytes")
    args = parser.parse_args(argv)
    labels = tuple(args.labels.split(","))
    for spec in args.split:
        name, _, file = spec.partition("=")
        counts = convert(args.source / file, args.out / f"{name}.manifest", args.attribute, labels, args.job_name,
                         args.creation_date)
        entities = sum(counts[label] for label in labels)
        per_label = ", ".join(f"{label} {counts[label]}" for label in labels)
        print(f"{name}: {file} -> {args.out / f'{name}.manifest'}: {counts['documents']} documents, "
              f"{entities} entities ({per_label})")


if __name__ == "__main__":
    main()
