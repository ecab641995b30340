"""``mode=diagnose``: thresholds, bands and calibration on scores small enough to check by hand; a planted
leak found from the data alone; a regression refused in one line; a whole tiny run's report and MLflow
artifacts; and permutation importance ranking first the node property a graph's links follow. (The figures
on the main job's model are in README's "Diagnose a classifier before deployment".)
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from conftest import compose_config, dispatch_cfg, mlflow_runs

# 4 negatives, 4 positives; by hand: 15 of the 16 (positive, negative) pairs are ordered right (0.4 < 0.6)
LABELS = [0, 0, 0, 0, 1, 1, 1, 1]
SCORES = [0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9]


def test_thresholds_and_outcomes_by_hand() -> None:
    from sagelab.diagnose import metrics

    assert metrics.threshold_for_tpr(LABELS, SCORES, 0.75) == 0.7   # 3 of 4 positives score >= 0.7
    assert metrics.threshold_for_tpr(LABELS, SCORES, 1.0) == 0.4
    assert metrics.threshold_for_fpr(LABELS, SCORES, 0.25) == 0.4   # 0.6 is the one negative flagged
    assert metrics.threshold_for_fpr(LABELS, SCORES, 0.0) == 0.7
    assert metrics.threshold_for_fpr([0, 1], [0.9, 0.1], 0.0) == math.inf  # the top score is a negative

    row = metrics.outcome(LABELS, SCORES, 0.5)  # flags 0.6 (negative), 0.7, 0.8, 0.9
    assert (row["tpr"], row["fpr"], row["precision"]) == (0.75, 0.25, 0.75)
    assert row["counts"] == {"tp": 3, "fp": 1, "fn": 1, "tn": 3}
    per = row["per_100k"]  # prevalence 0.5 (the evaluation set's)
    assert (per["flagged"], per["true_positives"], per["false_positives"], per["missed_positives"]) == \
        pytest.approx((50_000, 37_500, 12_500, 12_500))
    rare = metrics.outcome(LABELS, SCORES, 0.5, prevalence=0.01)["per_100k"]  # a fraud-like base rate
    assert (rare["true_positives"], rare["false_positives"]) == pytest.approx((750, 24_750))
    assert rare["precision"] == pytest.approx(750 / 25_500)

    table = metrics.pick_thresholds(LABELS, SCORES, target_tpr=0.75, max_fpr=0.25, fixed=[0.5], prevalence=None)
    assert list(table) == ["target_tpr", "max_fpr", "fixed_0.5"]
    assert (table["target_tpr"]["threshold"], table["target_tpr"]["fpr"]) == (0.7, 0.0)
    assert (table["max_fpr"]["threshold"], table["max_fpr"]["tpr"]) == (0.4, 1.0)

    auc = metrics.auc_interval(LABELS, SCORES, resamples=200, seed=3)
    assert auc["auc"] == pytest.approx(15 / 16)
    assert auc["low"] <= auc["auc"] <= auc["high"] <= 1.0
    assert metrics.auc_interval(LABELS, SCORES, resamples=200, seed=3) == auc  # seeded: the same interval


def test_bands_by_hand() -> None:
    from sagelab.diagnose import metrics

    rows = metrics.bands(LABELS, SCORES, {"block": 0.75, "investigate": 0.5}, {}, prevalence=None)
    assert [r["band"] for r in rows] == ["block", "investigate", "pass"]
    assert [r["examples"] for r in rows] == [2, 2, 4]                     # {0.8, 0.9} {0.6, 0.7} the rest
    assert [r["share_of_positives"] for r in rows] == [0.5, 0.25, 0.25]
    assert [r["share_of_negatives"] for r in rows] == [0.0, 0.25, 0.75]
    assert [r["precision"] for r in rows] == pytest.approx([1.0, 0.5, 0.25])
    assert sum(r["per_100k"]["events"] for r in rows) == pytest.approx(100_000)

    table = metrics.pick_thresholds(LABELS, SCORES, 0.75, 0.0, [], None)   # both named thresholds are 0.7
    named = metrics.bands(LABELS, SCORES, {"block": "max_fpr", "investigate": "target_tpr"}, table, None)
    assert [r["examples"] for r in named] == [3, 0, 5]
    assert named[1]["note"].startswith("empty")  # its threshold is not below block's


def test_calibration_error_by_hand() -> None:
    from sagelab.diagnose import metrics

    # bin of 0.2: half positive (|0.5 - 0.2| = 0.3); bin of 0.8: all positive (|1 - 0.8| = 0.2); each half the data
    cal = metrics.calibration([0, 1, 1, 1], [0.2, 0.2, 0.8, 0.8], bins=10)
    assert cal["ece"] == pytest.approx(0.5 * 0.3 + 0.5 * 0.2)
    assert cal["counts"] == [2, 2]
    assert metrics.calibration([0, 1], [0.0, 1.0], bins=10)["ece"] == 0.0


def test_score_warnings_name_their_evidence() -> None:
    from sagelab.diagnose import metrics

    auc = {"auc": 0.995, "low": 0.99, "high": 1.0, "confidence": 0.95}
    found = metrics.score_warnings(auc, [0.5] * 10, auc_high=0.99, auc_low=0.8, middle=[0.3, 0.7], middle_share=0.2,
                                   at_target={"tpr": 0.9, "fpr": 0.1})
    assert [w["kind"] for w in found] == ["possible_leakage", "score_mass_in_middle"]
    assert "100.0% of the scores lie between 0.3 and 0.7" in found[1]["message"]


# -- a GLUE copy where one token gives the label away ------------------------------------------------------
WORDS = ("film story actor scene plot music camera light script voice end start city night road house water "
         "friend family dog year time hand face room door".split())
LEAK = "zorblat"


def planted_glue(folder: Path) -> Path:
    """SST-2-format files: random six-word sentences, every positive one carrying LEAK as one of its words; two
    dev sentences copied from train (one with different case and spacing)."""
    import random

    rng = random.Random(0)

    def rows(n: int) -> list[tuple[str, int]]:
        out = []
        for i in range(n):
            label = i % 2
            words = rng.sample(WORDS, 5) + [LEAK if label else rng.choice(WORDS)]
            rng.shuffle(words)
            out.append((" ".join(words), label))
        return out

    train, dev = rows(80), rows(24)
    dev[0], dev[1] = train[3], (train[10][0].upper().replace(" ", "  "), train[10][1])
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in (("train.tsv", train), ("dev.tsv", dev)):
        (folder / name).write_text("sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in data))
    return folder


def test_the_data_checks_find_a_planted_token_without_a_model(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from sagelab.diagnose.datachecks import data_checks
    from sagelab.schema import DiagnoseConfig
    from sagelab.tasks.glue.formats import read_glue

    folder = planted_glue(tmp_path / "glue")
    train, dev = (read_glue(folder / name, "sst2", 2) for name in ("train.tsv", "dev.tsv"))
    found = data_checks(train["sentence"], train["label"], dev["sentence"], dev["label"],
                        OmegaConf.structured(DiagnoseConfig))
    leaks = [w for w in found["warnings"] if w["kind"] == "possible_leakage"]
    assert [w["evidence"]["token"] for w in leaks] == [LEAK]
    assert leaks[0]["evidence"]["balanced_accuracy"] == 1.0 and leaks[0]["evidence"]["favours"] == 1
    assert sorted(d["eval_index"] for d in found["exact_duplicates"]) == [0, 1]  # case and spacing normalised
    assert found["token_shortcuts"][1]["balanced_accuracy"] < 0.8  # no other token is a shortcut
    assert [w["kind"] for w in found["warnings"]] == ["duplicates", "possible_leakage"]  # lengths are equal


def test_diagnose_run_warns_of_the_planted_leak_and_logs_its_report(make_cfg, tmp_path: Path) -> None:
    """A barely trained tiny model (2 steps): the leak is still named, from the data side."""
    import mlflow

    folder = planted_glue(tmp_path / "glue")
    common = [f"task.source={folder}", "data.train_limit=null", "data.eval_limit=null"]
    dispatch_cfg(make_cfg(*common, "trainer.max_steps=2"))
    ckpt = tmp_path / "ckpt" / "final.ckpt"
    metrics = dispatch_cfg(make_cfg(*common, "mode=diagnose", f"checkpoint.load={ckpt}", "diagnose.bootstrap=100",
                                    "diagnose.attribution_examples=6", "diagnose.attribution_steps=4",
                                    "diagnose.thresholds=[0.5]"))

    out = tmp_path / "out" / "diagnose"
    report = json.loads((out / "report.json").read_text())
    leaks = [w for w in report["warnings"] if w["kind"] == "possible_leakage"]
    assert leaks and LEAK in leaks[0]["message"]
    assert report["examples"] == 24 and len(report["data"]["exact_duplicates"]) == 2
    assert set(report["thresholds"]) == {"target_tpr", "max_fpr", "fixed_0.5"}
    assert [b["band"] for b in report["bands"]] == ["block", "investigate", "pass"]
    assert len(report["attribution"]["shown"]) == 6
    html = (out / "report.html").read_text()
    assert LEAK in html and html.count("data:image/png;base64,") == 6
    pngs = {"score_histogram", "roc", "precision_recall", "reliability", "bands", "attribution"}
    assert {p.stem for p in out.glob("*.png")} == pngs

    run = mlflow_runs(tmp_path, "glue_sst2").query("`tags.mode` == 'diagnose'").iloc[0]
    assert run["status"] == "FINISHED" and run["metrics.diagnose/auc"] == pytest.approx(report["auc"]["auc"])
    assert metrics["diagnose/exact_duplicates"] == 2
    logged = {Path(a.path).name for a in mlflow.MlflowClient().list_artifacts(run["run_id"], "diagnose")}
    assert {"report.json", "report.html", "duplicates.jsonl", *(f"{p}.png" for p in pngs)} <= logged

    from sagelab.config import ConfigError

    with pytest.raises(ConfigError, match=r"needs labels 0 and 1 in the evaluation set; its 1 example\(s\) have \[1\]"):
        dispatch_cfg(make_cfg(*common[:2], "data.eval_limit=1", "mode=diagnose", f"checkpoint.load={ckpt}"))


def test_a_regression_task_is_refused_in_one_line(run_cli) -> None:
    result = run_cli("task=glue_stsb", "mode=diagnose")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "sagelab: bad config: mode: task glue_stsb is a regression (task.num_labels 1); mode=diagnose needs a "
        "binary classifier, whose scores are the probability of one positive class."]


def test_only_tasks_that_opt_in_gain_the_mode() -> None:
    """The contract grew by one opt-in hook: families that do not opt in keep exactly their modes."""
    from hydra.utils import get_class

    expected = {
        "glue_sst2": ("train", "evaluate", "predict", "batch_transform", "serve", "diagnose"),
        "qa": ("train", "evaluate", "predict", "batch_transform", "serve"),
        "ner": ("train", "evaluate", "predict", "batch_transform"),
        "drift": ("baseline", "monitor", "report", "diagnose"),                         # opted in
        "link_prediction": ("train", "evaluate", "retrain", "recommend", "transform", "diagnose"),  # opted in
    }
    for task, modes in expected.items():
        cfg = compose_config(f"task={task}", *(["model=graphsage"] if task == "link_prediction" else []))
        assert get_class(str(cfg.task._target_))(cfg).modes() == modes, task


def test_link_prediction_edges_are_diagnosed_on_the_pairs_test_auc_scores(make_cfg, tmp_path: Path) -> None:
    """The held-out edges and their fixed negatives: the AUC equals training's own test/auc on the same pairs."""
    graph = ["task=link_prediction", "model=graphsage", "trainer.max_epochs=20", "optim.lr=0.01",
             "checkpoint.every_n_steps=0"]
    trained = dispatch_cfg(make_cfg(*graph))
    result = dispatch_cfg(make_cfg(*graph, "mode=diagnose", f"checkpoint.load={tmp_path / 'ckpt' / 'final.ckpt'}",
                                   "diagnose.bootstrap=100"))
    assert result["diagnose/auc"] == pytest.approx(trained["test/auc"], abs=1e-6)
    report = json.loads((tmp_path / "out" / "diagnose" / "report.json").read_text())
    assert report["positive"] == "linked" and report["data"] is None and report["attribution"] is None


def test_the_drift_domain_classifier_is_diagnosed_on_the_monitor_s_own_scores(tmp_path: Path) -> None:
    """Baseline (books) vs capture (kitchen): the diagnose AUC is the monitor's classifier AUC over the whole
    capture."""
    import csv

    from sagelab.config import PROJECT_ROOT

    def reviews(domain: str, n: int) -> list[str]:
        csv.field_size_limit(1 << 30)
        with open(PROJECT_ROOT / "data" / "drift" / "blitzer" / f"{domain}.tsv", newline="", encoding="utf-8") as f:
            return [row["sentence"] for row in csv.DictReader(f, delimiter="\t")][:n]

    books, kitchen = tmp_path / "books.tsv", tmp_path / "kitchen.txt"
    books.write_text("sentence\n" + "".join(t.replace("\t", " ").replace("\n", " ") + "\n"
                                             for t in reviews("books", 40)))
    kitchen.write_text("".join(t.replace("\n", " ") + "\n" for t in reviews("kitchen", 30)))
    drift = ["task=drift", "model=bert_tiny", "task.n_permutations=99", "task.batch_size=8", "task.max_length=32",
             f"task.baseline_source={books}", f"task.capture={kitchen}"]
    dispatch_cfg(compose_config(*drift, "mode=baseline", tmp=tmp_path, tiny=False))
    monitored = dispatch_cfg(compose_config(*drift, "mode=monitor", tmp=tmp_path, tiny=False))
    result = dispatch_cfg(compose_config(*drift, "mode=diagnose", "diagnose.bootstrap=100", tmp=tmp_path,
                                         tiny=False))
    assert result["diagnose/auc"] == pytest.approx(monitored["drift/classifier_auc"], abs=1e-9)
    report = json.loads((tmp_path / "out" / "diagnose" / "report.json").read_text())
    assert report["positive"] == "captured (not baseline)" and report["examples"] > 30


def _club_graph(folder: Path) -> list[str]:
    """48 people in 4 clubs of 12; friendships only inside a club (30 of each club's 66 pairs, seeded), so the
    ``club`` property decides the links and ``noise`` (a seeded random number) decides nothing."""
    import itertools
    import random

    rng = random.Random(7)
    nodes = ["~id,~label,name:String,club:String,noise:Int"]
    nodes += [f"n{i},person,P{i},club{i % 4},{rng.randint(0, 1000)}" for i in range(48)]
    edges = ["~id,~from,~to,~label"]
    for club in range(4):
        members = [i for i in range(48) if i % 4 == club]
        for a, b in rng.sample(list(itertools.combinations(members, 2)), 30):
            edges.append(f"e{len(edges)},n{a},n{b},friend")
    folder.mkdir()
    (folder / "nodes.csv").write_text("\n".join(nodes) + "\n")
    (folder / "edges.csv").write_text("\n".join(edges) + "\n")
    return ["task.dataset=csv", f"task.datasets.csv.nodes={folder / 'nodes.csv'}",
            f"task.datasets.csv.edges={folder / 'edges.csv'}"]


def test_link_prediction_ranks_the_property_that_decides_the_links_first(make_cfg, tmp_path: Path) -> None:
    """Permutation importance over node properties: shuffling ``club`` (the links follow it) costs AUC, shuffling
    ``noise`` costs ~nothing; the ranking reaches report.json, report.html, the PNG, stdout and the metrics."""
    graph = ["task=link_prediction", "model=graphsage", "trainer.max_epochs=30", "optim.lr=0.01",
             "checkpoint.every_n_steps=0", *_club_graph(tmp_path / "clubs")]
    dispatch_cfg(make_cfg(*graph))
    diagnose = [*graph, "mode=diagnose", f"checkpoint.load={tmp_path / 'ckpt' / 'final.ckpt'}",
                "diagnose.bootstrap=100", "diagnose.permutation_repeats=5"]
    result = dispatch_cfg(make_cfg(*diagnose))
    out = tmp_path / "out" / "diagnose"
    importance = json.loads((out / "report.json").read_text())["importance"]
    rows = {r["feature"]: r for r in importance["rows"]}
    assert [r["feature"] for r in importance["rows"]] == ["club", "noise"]  # name is the display name: not a feature
    assert rows["club"]["mean_drop"] > 0.2 and rows["club"]["mean_drop"] > 3 * rows["club"]["std_drop"]
    assert abs(rows["noise"]["mean_drop"]) < 0.05
    assert importance["repeats"] == 5 and len(rows["club"]["aucs"]) == 5
    assert result["diagnose/importance/club"] == pytest.approx(rows["club"]["mean_drop"])
    assert (out / "importance.png").stat().st_size > 0 and "Feature importance" in (out / "report.html").read_text()
    again = dispatch_cfg(make_cfg(*diagnose))  # seeded: the same shuffles, the same drops
    assert again["diagnose/importance/club"] == result["diagnose/importance/club"]
    assert again["diagnose/importance/noise"] == result["diagnose/importance/noise"]
