"""Score the WNUT-17 shared-task submissions with the scorer task=ner uses (seqeval, default mode).

    python experiments/ner_wnut17/score_submissions.py <checkout of github.com/leondz/emerging_entities_17>

Each file of ``submissions/`` is read as token + tag per line (tab- or space-separated; the last column is the
tag) and scored against ``emerging.test.annotated`` sentence by sentence. The entity F1 printed for each team
is the number to compare with the paper's table (Derczynski et al. 2017): if they agree, ``val/f1`` and
``test/f1`` of ``task=ner`` are on the shared task's scale.
"""

from __future__ import annotations

import sys
from pathlib import Path


def read_tags(path: Path) -> list[list[str]]:
    """Tag sequences, one per sentence (blank or whitespace-only lines separate sentences)."""
    sentences, current = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if current:
                sentences.append(current)
            current = []
            continue
        current.append(line.replace("\t", " ").split(" ")[-1])
    if current:
        sentences.append(current)
    return sentences


def main(checkout: Path) -> None:
    from seqeval.metrics import f1_score, precision_score, recall_score

    gold = read_tags(checkout / "emerging.test.annotated")
    flat = [len(s) for s in gold]
    print(f"gold: {len(gold)} sentences, {sum(flat)} tokens")
    print("| submission | precision | recall | entity F1 |\n|---|---:|---:|---:|")
    for path in sorted((checkout / "submissions").iterdir()):
        tags = [t for s in read_tags(path) for t in s]
        if len(tags) != sum(flat):
            print(f"| {path.name} | token count {len(tags)} differs from the gold's | | |")
            continue
        it = iter(tags)
        pred = [[next(it) for _ in range(n)] for n in flat]  # the gold's sentence boundaries
        p, r, f = (100 * m(gold, pred) for m in (precision_score, recall_score, f1_score))
        print(f"| {path.name} | {p:.2f} | {r:.2f} | {f:.2f} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
