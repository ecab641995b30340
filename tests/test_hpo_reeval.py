"""``hpo.reeval_seeds``: the top configurations and the default run again on other seeds; the winner is the best
mean, not the luckiest single trial. Trials are the synthetic stand-in (``test_hpo_study.SYNTH``) with
``+synthetic.seed_noise``, a deterministic per-seed noise on its error, so seeds really disagree.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from sagelab.config import PROJECT_ROOT, ConfigError
from test_hpo_seeding import OPTIMAL
from test_hpo_study import compose, read_csv, run, study_args


def spec_of(tmp_path: Path, *extra: str):
    from sagelab.hpo.spec import build_spec

    return build_spec(compose(*study_args(tmp_path, "hpo=tpe", "search_space=glue_default", *extra)), [])


def test_the_winner_is_the_best_mean_over_seeds_not_the_luckiest_trial(tmp_path):
    """rank() alone, on hand-made results: trial 3 was the search's best and wins the first seed by luck."""
    from sagelab.hpo.reeval import rank

    spec = spec_of(tmp_path, "hpo.reeval_seeds=[1,2,3]")
    chosen = [{"trial_id": 3, "config": {}, "search_rank": 1, "is_default": False},
              {"trial_id": 5, "config": {}, "search_rank": 2, "is_default": False},
              {"trial_id": 0, "config": {}, "search_rank": None, "is_default": True}]
    errors = {3: [0.10, 0.40, 0.31], 5: [0.20, 0.21, 0.22], 0: [0.25, 0.21, 0.30]}
    results = {(t, s): {"status": "completed", "values": {"error": e}}
               for t, values in errors.items() for s, e in zip([1, 2, 3], values)}
    block = rank(spec, chosen, results)
    by_id = {c["trial_id"]: c for c in block["candidates"]}
    assert block["winner_trial"] == 5
    assert by_id[5]["mean"]["error"] == pytest.approx(0.21) and by_id[5]["std"]["error"] == pytest.approx(0.01)
    assert by_id[3]["mean"]["error"] == pytest.approx(0.27)
    # wins: seed 1 -> trial 3; seed 2 -> trials 5 and 0 tie (a win each); seed 3 -> trial 5
    assert (by_id[3]["wins"], by_id[5]["wins"], by_id[0]["wins"]) == (1, 2, 1)
    # a configuration that failed a seed does not compete, however good its other runs
    results[(5, 3)] = {"status": "failed"}
    block = rank(spec, chosen, results)
    assert block["winner_trial"] == 0 and {c["trial_id"]: c["failed"] for c in block["candidates"]}[5] == [3]


def test_options_are_checked_before_any_trial(tmp_path):
    assert spec_of(tmp_path).reeval_seeds == []  # off by default
    cases = [("hpo.reeval_seeds=[1,1]", "hpo.reeval_seeds"),
             ("hpo.reeval_top_k=0", "hpo.reeval_top_k"),
             (f"hpo.storage=sqlite:///{tmp_path}/s.db hpo.reeval_seeds=[1]", "hpo.reeval_seeds")]
    for overrides, key in cases:
        with pytest.raises(ConfigError) as err:
            spec_of(tmp_path, *overrides.split())
        assert err.value.key == key, overrides


def test_a_study_re_evaluates_its_top_configurations_and_the_default(tmp_path, capsys):
    import mlflow

    args = study_args(tmp_path, "hpo=tpe", "search_space=glue_default", "hpo.max_trials=3", "hpo.max_resource=1",
                      "hpo.reeval_seeds=[1,2]", "hpo.reeval_top_k=1", "+synthetic.seed_noise=0.05",
                      "hpo.study_name=re")
    summary = run(*args)
    study_dir = Path(summary["study_dir"])
    block = summary["reeval"]
    ids = [c["trial_id"] for c in block["candidates"]]
    assert block["seeds"] == [1, 2] and 0 in ids and len(ids) == len(set(ids)) in (1, 2)
    assert [c["is_default"] for c in block["candidates"]].count(True) == 1
    assert summary["n_trials"] == 3 and len(read_csv(study_dir / "results" / "trials.csv")) == 3  # not trials

    # each run: an ordinary trial command with the seed, at full fidelity, in reeval/<id>/
    for c in block["candidates"]:
        for seed in (1, 2):
            folder = study_dir / "reeval" / f"reeval-t{c['trial_id']}-s{seed}"
            command = (folder / "command.txt").read_text().split()
            assert command[-1] == f"seed={seed}" and "trainer.max_epochs=1" in command
            assert len(read_csv_rounds(folder)) == 1

    # the winner and the wins follow from the runs' own values (results/reeval.csv)
    rows = read_csv(study_dir / "results" / "reeval.csv")
    errors = defaultdict(list)
    for row in rows:
        errors[int(row["trial_id"])].append(float(row["error"]))
    assert len(rows) == 2 * len(ids) and any(len(set(v)) == 2 for v in errors.values())  # the seeds disagree
    means = {t: statistics.fmean(v) for t, v in errors.items()}
    winner = min(means, key=means.get)
    assert block["winner_trial"] == summary["best_trial"] == winner
    assert summary["best"]["error"] == pytest.approx(means[winner])
    for c in block["candidates"]:
        wins = sum(errors[c["trial_id"]][i] == min(v[i] for v in errors.values()) for i in range(2))
        assert c["wins"] == wins and c["std"]["error"] == pytest.approx(statistics.stdev(errors[c["trial_id"]]))
    assert summary["default"]["error"] == pytest.approx(means[0])
    assert summary["improvement"] == pytest.approx((means[0] - means[winner]) / means[0])

    # the report, the best-config file and the parent run say the same
    out = capsys.readouterr().out
    assert "re-evaluated on seeds 1, 2" in out and "<- chosen" in out
    text = Path(summary["best_experiment"]).read_text()
    assert f"trial {winner}" in text and "re-evaluated on seeds 1, 2" in text
    cfg = compose(f"+experiment={Path(summary['best_experiment']).stem}", searchpath=tmp_path / "conf")
    assert cfg.optim.lr == summary["best_config"]["lr"]
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    (parent,) = mlflow.search_runs(search_all_experiments=True, filter_string="tags.`sagelab.hpo.role` = 'parent'",
                                   output_format="list")
    assert parent.data.metrics[f"reeval_t{winner}_error_mean"] == pytest.approx(means[winner])
    assert parent.data.tags["sagelab.hpo.reeval_winner"] == str(winner)

    # the same command again: nothing left to run, nothing run twice
    stamps = {p: p.stat().st_mtime_ns for p in (study_dir / "reeval").glob("*/run.json")}
    again = run(*args)
    assert again["reeval"]["winner_trial"] == winner and "0 of" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in (study_dir / "reeval").glob("*/run.json")} == stamps


def test_when_the_default_is_best_on_every_seed_it_stays_the_best(tmp_path, capsys):
    summary = run(*study_args(tmp_path, "hpo=tpe", "search_space=glue_default", "hpo.max_trials=3",
                              "hpo.max_resource=1", "hpo.reeval_seeds=[1,2]", "hpo.reeval_top_k=1", *OPTIMAL))
    assert summary["best_trial"] == summary["default_trial"] == 0 and summary["best_is_default"]
    assert {c["trial_id"]: c["wins"] for c in summary["reeval"]["candidates"]}[0] == 2
    assert "no trial beat the default" in Path(summary["best_experiment"]).read_text()


@pytest.mark.slow
def test_an_interrupted_re_evaluation_resumes_without_running_anything_twice(tmp_path):
    """SIGTERM while the default's second-seed run hangs: the study ends KILLED (exit 130) with the first seed's
    run kept; the same command then runs only the missing one."""
    command = [sys.executable, "run.py", *study_args(
        tmp_path, "hpo=tpe", "search_space=glue_default", "hpo.max_trials=2", "hpo.max_resource=1",
        "hpo.reeval_seeds=[1,2]", "hpo.reeval_top_k=1", "hpo.study_name=cut", *OPTIMAL)]
    reeval = tmp_path / "hpo" / "cut" / "reeval"
    env = {**os.environ, "SAGELAB_SYNTHETIC_HANG": "reeval-t0-s2"}  # the default is the top trial: t0 only
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT, env=env,
                                 start_new_session=True)
        deadline = time.monotonic() + 180
        while not ((reeval / "reeval-t0-s1" / "run.json").exists()
                   and (reeval / "reeval-t0-s2" / "command.txt").exists()):
            assert first.poll() is None and time.monotonic() < deadline, (tmp_path / "first.log").read_text()
            time.sleep(0.2)
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=60) == 130
    kept = (reeval / "reeval-t0-s1" / "run.json").stat().st_mtime_ns
    assert not (reeval / "reeval-t0-s2" / "run.json").exists()

    second = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "1 of 2 runs to go" in second.stdout and "wins 2/2  <- chosen" in second.stdout
    assert (reeval / "reeval-t0-s1" / "run.json").stat().st_mtime_ns == kept


def read_csv_rounds(folder: Path) -> list[dict]:
    import json

    return json.loads((folder / "result.json").read_text())["history"]
