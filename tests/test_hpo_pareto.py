"""Pareto front, hypervolume (against values worked out by hand) and objectives."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from sagelab.config import ConfigError
from sagelab.hpo import pareto
from sagelab.hpo.objectives import (
    Objective,
    error_from_metric,
    measure_latency_ms,
    parse_objectives,
    scheduler_values,
    trial_metrics,
)


def test_pareto_mask_on_a_known_set():
    points = np.array([[1, 5], [2, 3], [3, 4], [4, 1], [2, 3.5], [5, 5], [np.nan, 0]])
    assert pareto.pareto_mask(points).tolist() == [True, True, False, True, False, False, False]


def test_hypervolume_2d_by_hand():
    # front (1,2), (2,1) in the box [0,3]^2: area dominated = 2*1 + 1*2 - 1*1 = 3 of 9
    values = np.array([[1.0, 2.0], [2.0, 1.0], [2.5, 2.5]])
    assert pareto.hypervolume(values, [0, 0], [3, 3]) == pytest.approx(3 / 9)


def test_hypervolume_3d_by_hand():
    # a (0.5,0.5,0.5) cube + b (0,0,0.75)x(1,1,1)... in the unit box:
    # a dominates 0.5^3 = 0.125; b = (0.25, 0.25, 0.75) dominates 0.75*0.75*0.25 = 0.140625;
    # overlap = 0.5*0.5*0.25 = 0.0625 -> 0.203125
    values = np.array([[0.5, 0.5, 0.5], [0.25, 0.25, 0.75]])
    assert pareto.hypervolume(values, [0, 0, 0], [1, 1, 1]) == pytest.approx(0.203125)


def test_hypervolume_scales_units_and_ignores_points_outside_the_box():
    # same geometry as the 2-D case, second objective in milliseconds
    values = np.array([[1.0, 2000.0], [2.0, 1000.0], [9.0, 0.0]])
    assert pareto.hypervolume(values, [0, 0], [3, 3000]) == pytest.approx(3 / 9)
    assert pareto.hypervolume(np.array([[0.2]]), [0.0], [1.0]) == pytest.approx(0.8)
    assert pareto.hypervolume(np.empty((0, 2)), [0, 0], [1, 1]) == 0.0


def test_anytime_hypervolume_never_decreases():
    rng = np.random.default_rng(0)
    values = rng.random((30, 3))
    lower, upper = pareto.default_bounds(values)
    times, curve = pareto.hypervolume_curve(rng.random(30), values, lower, upper)
    assert np.all(np.diff(times) >= 0) and np.all(np.diff(curve) >= -1e-12)
    assert curve[-1] == pytest.approx(pareto.hypervolume(values, lower, upper))


def test_plots_draw_the_front(tmp_path):
    import pandas as pd

    table = pd.DataFrame({"error": [0.3, 0.2, 0.4], "latency_ms": [1.0, 3.0, 2.0], "pareto": [True, True, False]})
    paths = pareto.plot_pairs(table, ["latency_ms"], "error", "pareto", tmp_path)
    assert [p.name for p in paths] == ["pareto_error_vs_latency_ms.png"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_objectives_by_name():
    objs = parse_objectives(
        OmegaConf.create({"metrics": ["error", "latency_ms", "val/f1"], "modes": ["min", "min", "max"]})
    )
    assert [o.key for o in objs] == ["error", "latency_ms", "neg_val/f1"]
    assert parse_objectives({"metrics": ["error", "cost_usd"]}) == [Objective("error"), Objective("cost_usd")]
    for bad, key in [
        ({"metrics": ["error"], "modes": ["max"]}, "hpo.modes[0]"),
        ({"metrics": ["accuracy"], "modes": ["max"]}, "hpo.metrics[0]"),
        ({"metrics": ["val/f1"]}, "hpo.modes[0]"),
        ({"metrics": ["error", "error"]}, "hpo.metrics"),
        ({"metrics": ["error"], "modes": ["min", "min"]}, "hpo.modes"),
    ]:
        with pytest.raises(ConfigError) as err:
            parse_objectives(bad)
        assert err.value.key == key


def test_error_cost_and_scheduler_values():
    assert error_from_metric(0.8, "max") == pytest.approx(0.2)
    assert error_from_metric(0.3, "min") == pytest.approx(0.3)
    m = trial_metrics(0.75, "max", train_time_s=1800, price_per_hour=0.23, latency_ms=2.0, logged={"val/f1": 0.75})
    assert m["error"] == pytest.approx(0.25) and m["cost_usd"] == pytest.approx(0.115)
    values = scheduler_values(m, [Objective("error"), Objective("val/f1", "max")])
    assert values == {"error": pytest.approx(0.25), "neg_val/f1": pytest.approx(-0.75)}
    with pytest.raises(KeyError):
        scheduler_values({"error": 0.1}, [Objective("latency_ms")])


def test_latency_is_per_example_of_the_fastest_repeat():
    import time

    calls = []

    def forward():
        calls.append(1)
        time.sleep(0.004 if len(calls) > 2 else 0.05)  # slow warm-up calls are not timed

    ms = measure_latency_ms(forward, n_examples=4, warmup=2, repeats=3)
    assert len(calls) == 5 and 0.9 <= ms <= 5
