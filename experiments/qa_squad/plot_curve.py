"""Learning curve of a ``task=qa`` training run: held-out F1 / EM vs training questions seen.

Reads the run's MLflow metric history (``val/f1``, ``val/exact_match`` and
``train/questions_seen``, all logged at each validation during training), writes
a PNG and prints the points as a Markdown table.

    .venv/bin/python experiments/qa_squad/plot_curve.py RUN_ID [--out experiments/qa_squad/learning_curve.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def curve(run_id: str, tracking_uri: str) -> list[tuple[int, float, float, float]]:
    """(step, questions seen, EM, F1) for every validation that logged all three."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    history = {key: {m.step: m.value for m in client.get_metric_history(run_id, key)}
               for key in ("val/f1", "val/exact_match", "train/questions_seen")}
    steps = sorted(set(history["val/f1"]) & set(history["train/questions_seen"]))
    return [(s, history["train/questions_seen"][s], history["val/exact_match"][s], history["val/f1"][s])
            for s in steps]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_id")
    parser.add_argument("--tracking-uri", default=f"sqlite:///{ROOT}/mlruns/mlflow.db")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("learning_curve.png"))
    parser.add_argument("--title", default="MiniLM (all-MiniLM-L6-v2) on SQuAD v1.1, 8 held-out articles")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = curve(args.run_id, args.tracking_uri)
    if not points:
        raise SystemExit(f"run {args.run_id} has no val/f1 with train/questions_seen (set trainer.val_check_interval)")
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([p[1] for p in points], [p[3] for p in points], "o-", label="F1")
    ax.plot([p[1] for p in points], [p[2] for p in points], "s--", label="exact match")
    ax.set_xlabel("training questions seen")
    ax.set_ylabel("held-out score (%)")
    ax.set_title(args.title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}\n\n| step | questions seen | EM | F1 |\n|---:|---:|---:|---:|")
    for step, seen, em, f1 in points:
        print(f"| {step} | {seen:,.0f} | {em:.2f} | {f1:.2f} |")


if __name__ == "__main__":
    main()
