"""Books baseline vs kitchen / airline traffic: the measurements in experiments/drift/README.md.

    .venv/bin/python experiments/drift/run_experiment.py            # prepare, run the CLI, analyse
    .venv/bin/python experiments/drift/run_experiment.py --analyse-only

1. prepare: the 1,956 distinct book reviews are shuffled (seed 0) into a
   baseline part (1,356) and a no-drift control (600); kitchen and airline
   reviews (2,000 each) become production traffic. All three are written as
   SageMaker data-capture folders (one request per line, 500 lines a file,
   ``yyyy/mm/dd/hh`` layout); the kitchen folder also gets corrupt lines and
   an empty file.
2. the CLI, as a user runs it: ``mode=baseline`` on the baseline part with
   MiniLM and the seed's pooling (30 % held out for calibration), then
   ``mode=monitor`` on each capture folder (threshold auto at fpr 0.01,
   windows of 100, embeddings saved).
3. analysis of the saved embeddings and scores: per-record AUC of the cosine
   score, false-positive rate on the control, and MMD p-values over repeated
   random windows of 50, 100 and 500 records.
Results go to ``outputs/drift_experiment/results.json`` and are printed.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))
WORK = ROOT / "outputs" / "drift_experiment"
DATA = ROOT / "data" / "drift" / "blitzer"
EXPERIMENT = "drift_books"


def read_reviews(domain: str) -> list[str]:
    csv.field_size_limit(1 << 30)
    with open(DATA / f"{domain}.tsv", newline="", encoding="utf-8") as f:
        return [row["sentence"] for row in csv.DictReader(f, delimiter="\t")]


def write_capture(folder: Path, texts: list[str], corrupt: bool = False) -> None:
    from sagelab.readers.capture import capture_line

    for i in range(0, len(texts), 500):
        hour = folder / "2022" / "01" / "18" / f"{i // 500:02d}"
        hour.mkdir(parents=True, exist_ok=True)
        lines = [capture_line([t], f"ev-{i + j}", f"2022-01-18T{i // 500:02d}:00:{j % 60:02d}Z")
                 for j, t in enumerate(texts[i : i + 500])]
        data = "\n".join(lines).encode() + b"\n"
        if corrupt and i == 0:  # undecodable bytes, truncated JSON, a request without text
            data = (lines[0].encode() + b"\n" + b'{"captureData": {"endpointInput": {"data": "\xff\xfe"}}}\n'
                    + b'{"captureData": {"endpointInput": {"data": "[\\"cut off\n'
                    + b'{"captureData": {"endpointInput": {"data": "{\\"label\\": 1}"}}}\n'
                    + "\n".join(lines[1:]).encode() + b"\n")
        (hour / "capture.jsonl").write_bytes(data)
    if corrupt:
        (folder / "2022" / "01" / "18" / "99").mkdir(parents=True, exist_ok=True)
        (folder / "2022" / "01" / "18" / "99" / "empty.jsonl").write_bytes(b"")


def prepare() -> None:
    books = list(dict.fromkeys(read_reviews("books")))
    order = np.random.default_rng(0).permutation(len(books))
    control = [books[i] for i in order[:600]]
    baseline = [books[i] for i in order[600:]]
    WORK.mkdir(parents=True, exist_ok=True)
    with open(WORK / "books_baseline.tsv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["sentence"])
        writer.writerows([t] for t in baseline)
    write_capture(WORK / "capture" / "books_control", control)
    write_capture(WORK / "capture" / "kitchen", read_reviews("kitchen"), corrupt=True)
    write_capture(WORK / "capture" / "airline", read_reviews("airline"))
    print(f"prepared: {len(baseline)} baseline, {len(control)} control book reviews in {WORK}")


def cli(*overrides: str) -> None:
    cmd = [sys.executable, str(ROOT / "run.py"), "task=drift", "model=minilm",
           f"logger.experiment_name={EXPERIMENT}", *overrides]
    print("$", " ".join(cmd[1:]), flush=True)
    started = time.monotonic()
    subprocess.run(cmd, cwd=ROOT, check=True)
    print(f"  ({time.monotonic() - started:.0f} s)", flush=True)


def run_cli() -> None:
    cli("mode=baseline", f"task.baseline_source={WORK / 'books_baseline.tsv'}", "task.calibration_fraction=0.3",
        f"hydra.run.dir={WORK / 'baseline'}")
    for name in ("books_control", "kitchen", "airline"):
        cli("mode=monitor", f"task.baseline={WORK / 'baseline' / 'baseline'}",
            f"task.capture={WORK / 'capture' / name}", "task.window_size=100", "task.save_embeddings=true", f"hydra.run.dir={WORK / ('monitor_' + name)}")


def windows(pool: np.ndarray, size: int, repeats: int, rng: np.random.Generator) -> list[np.ndarray]:
    return [pool[rng.choice(len(pool), size=size, replace=False)] for _ in range(repeats)]


def resplit_fpr(books: np.ndarray, repeats: int, n_cal: int = 407, n_control: int = 400, fpr: float = 0.01) -> dict:
    """Spread of the control false-positive rate over random re-splits of all embedded book reviews.

    One split gives one FPR; re-splitting the 1,549 embedded books (reference + control) into
    reference / calibration / control parts shows how much it moves (calibration scores are
    recomputed against each split's own unit mean).
    """
    from sagelab.tasks.drift.calibration import calibrate_threshold
    from sagelab.tasks.drift.scoring import cosine_scores, unit_mean

    rng = np.random.default_rng(2)
    rates = []
    for _ in range(repeats):
        order = rng.permutation(len(books))
        cal, control, ref = order[:n_cal], order[n_cal : n_cal + n_control], order[n_cal + n_control :]
        mu = unit_mean(books[ref])
        threshold = calibrate_threshold(cosine_scores(books[cal], mu), fpr).value
        rates.append(float(np.mean(cosine_scores(books[control], mu) < threshold)))
    rates_arr = np.array(rates)
    return {"repeats": repeats, "reference": len(books) - n_cal - n_control, "calibration": n_cal,
            "control": n_control, "mean": float(rates_arr.mean()), "p90": float(np.quantile(rates_arr, 0.9)),
            "share_le_1.5x_fpr": float(np.mean(rates_arr <= 1.5 * fpr))}


def analyse(repeats: int, n_permutations: int, classifier_windows: int) -> dict:
    from sklearn.metrics import roc_auc_score

    from sagelab.tasks.drift.baseline import Baseline
    from sagelab.tasks.drift.classifier import domain_classifier_auc
    from sagelab.tasks.drift.mmd import mmd_test

    baseline = Baseline.load(WORK / "baseline" / "baseline")
    emb, scores, stats = {}, {}, {}
    for name in ("books_control", "kitchen", "airline"):
        folder = WORK / f"monitor_{name}" / "monitor"
        emb[name] = np.load(folder / "embeddings.npy").astype(np.float64)
        scores[name] = np.array([json.loads(line)["score"] for line in open(folder / "scores.jsonl")])
        stats[name] = json.loads((folder / "statistics.json").read_text())
    threshold = stats["books_control"]["threshold"]["value"]
    out: dict = {"threshold": stats["books_control"]["threshold"], "per_record": {}, "windows": {}, "cli": {}}
    for name in emb:
        s = stats[name]
        out["cli"][name] = {
            "records": s["record_count"], "bad_lines": s["bad_lines"], "violation_rate": s["violation_rate"],
            "window_p_values": [w["p_value"] for w in s["windows"]],
            "window_classifier_auc": [w["classifier_auc"] for w in s["windows"]],
            "mean_score": s["scores"]["mean"],
        }
    for name in ("kitchen", "airline"):
        labels = np.concatenate([np.zeros(len(scores["books_control"])), np.ones(len(scores[name]))])
        both = np.concatenate([scores["books_control"], scores[name]])
        out["per_record"][name] = {
            "auc": float(roc_auc_score(labels, -both)),  # low score = out of domain
            "flagged_at_calibrated": float(np.mean(scores[name] < threshold)),
            "flagged_at_0.5": float(np.mean(scores[name] < 0.5)),
        }
    out["per_record"]["books_control"] = {
        "fpr_at_calibrated": float(np.mean(scores["books_control"] < threshold)),
        "fpr_at_0.5": float(np.mean(scores["books_control"] < 0.5)),
        "records": int(len(scores["books_control"])),
    }
    out["resplit_fpr"] = resplit_fpr(np.vstack([baseline.embeddings, emb["books_control"]]), repeats=200)
    reference = np.asarray(baseline.embeddings, dtype=np.float64)
    rng = np.random.default_rng(1)
    for size in (50, 100, 500):
        for name in emb:
            ps, aucs = [], []
            for i, window in enumerate(windows(emb[name], size, repeats, rng)):
                ps.append(mmd_test(reference, window, n_permutations=n_permutations, seed=i).p_value)
                if i < classifier_windows:
                    aucs.append(domain_classifier_auc(reference, window, seed=i))
            ps = np.array(ps)
            out["windows"][f"{name}/{size}"] = {
                "windows": repeats, "median_p": float(np.median(ps)), "max_p": float(ps.max()),
                "share_p_gt_0.05": float(np.mean(ps > 0.05)), "share_p_lt_0.01": float(np.mean(ps < 0.01)),
                "median_classifier_auc": float(np.median(aucs)) if aucs else None,
            }
            print(f"window {size:>3} {name:<13} median p {np.median(ps):.3f}  p>0.05 {np.mean(ps > 0.05):.2f}  "
                  f"p<0.01 {np.mean(ps < 0.01):.2f}  median AUC {np.median(aucs):.3f}", flush=True)
    for share in (0.05, 0.1, 0.2):  # partial drift: a share of kitchen reviews mixed into book windows of 100
        ps = []
        for i in range(repeats):
            n_mix = int(round(100 * share))
            mixed = np.vstack([emb["books_control"][rng.choice(600, 100 - n_mix, replace=False)],
                               emb["kitchen"][rng.choice(len(emb["kitchen"]), n_mix, replace=False)]])
            ps.append(mmd_test(reference, mixed, n_permutations=n_permutations, seed=i).p_value)
        ps = np.array(ps)
        out["windows"][f"books+{share:.0%}_kitchen/100"] = {
            "windows": repeats, "median_p": float(np.median(ps)), "share_p_lt_0.05": float(np.mean(ps < 0.05)),
            "share_p_lt_0.01": float(np.mean(ps < 0.01)),
        }
        print(f"window 100 books+{share:.0%} kitchen  median p {np.median(ps):.3f}  p<0.05 {np.mean(ps < 0.05):.2f}  "
              f"p<0.01 {np.mean(ps < 0.01):.2f}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--analyse-only", action="store_true")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--permutations", type=int, default=500)
    parser.add_argument("--classifier-windows", type=int, default=20)
    args = parser.parse_args()
    if not args.analyse_only:
        prepare()
        run_cli()
    results = analyse(args.repeats, args.permutations, args.classifier_windows)
    (WORK / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps({k: results[k] for k in ("threshold", "per_record", "resplit_fpr")}, indent=2))
    print(f"wrote {WORK / 'results.json'}")


if __name__ == "__main__":
    main()
