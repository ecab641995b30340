"""Drift scoring speed: the seed's per-record loop vs sagelab's unit-mean scoring, plus embedding throughput.

    .venv/bin/python benchmarks/drift_scoring.py                       # 10,000 x 1,000, d=384, MiniLM
    .venv/bin/python benchmarks/drift_scoring.py --seed-queries 100    # time the seed loop on a subset

The seed scores each captured record with ``1 - scipy.spatial.distance.cosine``
against every baseline vector in a Python loop; sagelab stores the mean of the
unit baseline vectors once and scores a record with one dot product. Both run
here on the same random embeddings (MiniLM's 384 dimensions); the script
prints the largest absolute difference between their scores and the speed
ratio. With ``--seed-queries`` below the query count the seed loop runs on
that many queries and its time is scaled up (the loop is linear in queries);
the difference is then checked on those queries.

Embedding throughput is measured on real review sentences
(``data/drift/blitzer/books.tsv``) with all-MiniLM-L6-v2 and the seed's pooling.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sagelab.tasks.drift.scoring import cosine_scores, seed_cosine_scores, unit_mean  # noqa: E402


def scoring(n_baseline: int, n_queries: int, dim: int, seed_queries: int) -> None:
    rng = np.random.default_rng(0)
    baseline = rng.normal(size=(n_baseline, dim)).astype(np.float32) + 0.1
    queries = rng.normal(size=(n_queries, dim)).astype(np.float32) + 0.1

    t0 = time.perf_counter()
    mu = unit_mean(baseline)  # once per baseline, stored with it
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    fast = cosine_scores(queries, mu)
    t_fast = time.perf_counter() - t0

    m = min(seed_queries, n_queries)
    t0 = time.perf_counter()
    slow = seed_cosine_scores(queries[:m], baseline)
    t_slow_measured = time.perf_counter() - t0
    t_slow = t_slow_measured * n_queries / m

    diff = float(np.max(np.abs(fast[:m] - slow)))
    print(f"scoring: baseline {n_baseline:,} x {dim}, queries {n_queries:,}")
    note = "" if m == n_queries else f" (measured on {m:,} queries: {t_slow_measured:.2f} s, scaled x{n_queries / m:g})"
    print(f"  seed per-record loop      : {t_slow:10.3f} s{note}")
    print(f"  sagelab unit-mean scoring : {t_fast:10.6f} s  (+ {t_build:.6f} s once to build the unit mean)")
    print(f"  max |score diff|          : {diff:.3e}  ({'OK' if diff <= 1e-6 else 'FAIL'} <= 1e-6)")
    print(f"  speed ratio               : {t_slow / t_fast:,.0f}x scoring only, "
          f"{t_slow / (t_fast + t_build):,.0f}x including the unit-mean build")


def read_sentences(n: int) -> list[str]:
    csv.field_size_limit(1 << 30)
    path = ROOT / "data" / "drift" / "blitzer" / "books.tsv"
    if not path.exists():
        path = Path("/work/shared/data/drift/blitzer/books.tsv")
    with open(path, newline="", encoding="utf-8") as f:
        rows = [r["sentence"] for r in csv.DictReader(f, delimiter="\t")]
    return rows[:n]


def throughput(n: int, batch_size: int, max_length: int, threads: int) -> None:
    import torch
    from omegaconf import OmegaConf

    from sagelab.tasks.drift.embedding import embed_texts, load_encoder

    torch.set_num_threads(threads)
    model_cfg = OmegaConf.load(ROOT / "conf" / "model" / "minilm.yaml")
    model, tokenizer = load_encoder(model_cfg)
    texts = read_sentences(n)
    embed_texts(model, tokenizer, texts[:batch_size], batch_size=batch_size, max_length=max_length)  # warm-up
    t0 = time.perf_counter()
    emb = embed_texts(model, tokenizer, texts, "second_to_last_mean", batch_size, max_length)
    dt = time.perf_counter() - t0
    print(f"embedding: all-MiniLM-L6-v2, second_to_last_mean, {len(texts)} book reviews, "
          f"max_length {max_length}, batch {batch_size}, {threads} thread(s)")
    print(f"  {len(texts) / dt:,.1f} sentences/s  ({dt:.1f} s, output {emb.shape})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--seed-queries", type=int, default=1_000, help="queries the slow seed loop runs on")
    parser.add_argument("--embed", type=int, default=512, help="sentences for the throughput run (0 skips it)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, nargs="+", default=[128])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from sagelab import hardware

    print(f"machine: {hardware.describe()}", flush=True)
    scoring(args.baseline, args.queries, args.dim, args.seed_queries)
    if args.embed:
        for max_length in args.max_length:
            throughput(args.embed, args.batch_size, max_length, args.threads)


if __name__ == "__main__":
    main()
