"""``hpo.resource=steps``: a round (one report, ASHA's rung unit) is ``hpo.round_steps`` optimizer steps, not an
epoch, so a machine that trains few epochs still gets several rungs. A real bert_tiny run shows the rounds cross
epoch ends; a synthetic ASHA study shows the rungs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sagelab.config import ConfigError
from test_hpo_study import compose, run, study_args
from test_hpo_trial import TINY, hpo_callback, logging_args
from conftest import dispatch_cfg as train


def test_rounds_of_steps_cross_epoch_ends_in_a_real_run(tmp_path):
    from sagelab.hpo.spec import build_spec

    # 48 examples in batches of 16: 3 steps an epoch; rounds of 2 steps end mid-epoch, 3 rounds take 2 epochs
    cfg = compose(*TINY, *logging_args(tmp_path), "hpo=asha", "search_space=glue_default", f"hpo.dir={tmp_path}/hpo",
                  "hpo.max_resource=3", "hpo.max_trials=1", "hpo.resource=steps", "hpo.round_steps=2")
    spec = build_spec(cfg, TINY)
    assert spec.length_overrides() == ["trainer.max_steps=6", "trainer.max_epochs=6", "trainer.val_check_interval=2",
                                       "trainer.check_val_every_n_epoch=null"]
    spec.parent_run_id = "0" * 32
    spec.save()
    train(compose(*TINY, *logging_args(tmp_path), f"+output_dir={tmp_path}/b", f"checkpoint.dir={tmp_path}/b",
                  "optim.lr=1e-3", *spec.length_overrides(), *hpo_callback(spec)))
    result = json.loads((spec.trial_dir(0) / "result.json").read_text())
    assert [r["round"] for r in result["history"]] == [1, 2, 3]  # per epoch it would have been 2 rounds


def test_an_asha_study_over_steps_stops_trials_at_several_rungs(tmp_path):
    # each round takes 0.5 s, as in test_hpo_schedulers: time for the Tuner to see a report and stop the trial
    # at its rung even on a loaded machine (with near-instant rounds a trial can finish before the stop lands)
    summary = run(*study_args(tmp_path, "hpo=asha", "search_space=glue_default", "hpo.max_trials=6",
                              "hpo.resource=steps", "hpo.round_steps=5", "hpo.max_resource=9",
                              "hpo.grace_period=1", "hpo.reduction_factor=3", "hpo.n_workers=1",
                              "+synthetic.epoch_s=0.5"))
    study = Path(summary["study_dir"])
    rounds = [len(json.loads(p.read_text())["history"]) for p in study.glob("trials/*/result.json")]
    assert max(rounds) == 9 and min(rounds) < 9 and summary["n_stopped"] >= 1
    from sagelab.hpo.spec import StudySpec

    spec = StudySpec.load(study / "spec.json")
    argv = spec.trial_argv(0, summary["best_config"])
    assert "trainer.max_steps=45" in argv and "trainer.val_check_interval=5" in argv
    best = Path(summary["best_experiment"]).read_text()
    assert "max_steps: 45" in best and "check_val_every_n_epoch: null" in best


def test_round_steps_goes_with_resource_steps(tmp_path):
    from sagelab.hpo.spec import build_spec

    for overrides, key in ((["hpo.resource=steps"], "hpo.round_steps"), (["hpo.round_steps=10"], "hpo.round_steps")):
        with pytest.raises(ConfigError) as err:
            build_spec(compose(*study_args(tmp_path, "hpo=asha", "search_space=glue_default", *overrides)), [])
        assert err.value.key == key
    epochs = build_spec(compose(*study_args(tmp_path, "hpo=asha", "search_space=glue_default")), [])
    steps = build_spec(compose(*study_args(tmp_path, "hpo=asha", "search_space=glue_default", "hpo.resource=steps",
                                           "hpo.round_steps=10")), ["trainer.max_steps=7"])
    assert epochs.length_overrides() == [f"trainer.max_epochs={epochs.max_resource}"]
    assert steps.name != epochs.name and "trainer.max_steps=7" not in steps.base_overrides
