"""A study's first trials: the default configuration, known-good points, and an earlier study's trials.

A study pays for itself only if it is measured against what would have been trained without it: the composed
config's own values of the space's parameters (``SearchSpace.defaults``), i.e. what ``python run.py <the
same command>`` trains. So that configuration is trial 0 of every study (``hpo.evaluate_default``, on by
default), ``hpo.points_to_evaluate`` adds known-good points after it, and ``hpo.warm_start`` brings in an
earlier study's finished trials. Everything here is resolved by :func:`sagelab.hpo.spec.build_spec`, before
any trial runs, and stored in ``spec.json``; each backend feeds it through its own mechanism (Syne Tune's
``points_to_evaluate``, Optuna's ``enqueue_trial`` / ``add_trials``, the Ray searcher's first suggestions).

A default outside the space is not clipped (a clipped value is not the default any more): it is skipped with
one line saying which parameter and why. A point the user wrote that is outside the space, or names a
parameter the space lacks, is a :class:`~sagelab.config.ConfigError` naming that entry.
"""

from __future__ import annotations

import sys
from typing import Any, Mapping

from omegaconf import DictConfig, ListConfig, OmegaConf

from sagelab.config import ConfigError
from sagelab.hpo.space import BRANCH, Param, SearchSpace, plain

ORIGIN = "sagelab.origin"  # Optuna user attribute: default | point | warm_start (absent: sampled)
SEED_INDEX = "sagelab.seed_index"  # position of an enqueued point in spec.points (idempotent seeding)
_BAD = object()


def coerce(param: Param, value: Any) -> Any:
    """``value`` as the space would produce it (an int for randint, a float for the continuous types, the
    matching entry of a choice), or :data:`_BAD` if the space cannot produce it."""
    value = plain(value)
    if param.type == "choice":
        for option in param.values:
            if value == option or str(value) == str(option):
                return option
        return _BAD
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return _BAD
    if param.type == "randint":
        if float(value) != int(value):
            return _BAD
        value = int(value)
    else:
        value = float(value)
    return value if param.contains(value) else _BAD


def describe(param: Param) -> str:
    """``loguniform 1e-05..0.0002``; a conditional parameter's branch says whose range it is."""
    name, _, choice = param.name.partition(BRANCH)
    given = f" ({name}'s range for {choice})" if choice else ""
    if param.type == "choice":
        return f"choice of {list(param.values)}{given}"
    return f"{param.type} {param.low}..{param.high}{given}"


def initial_points(hpo: DictConfig | Mapping, space: SearchSpace,
                   defaults: Mapping[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """(the points every study evaluates first, in order; the default configuration if it is among them)."""
    points: list[dict[str, Any]] = []
    default = None
    if bool(hpo.get("evaluate_default", True)):
        default, outside = {}, []
        for name in space.order():  # a conditional parameter's range depends on its choice's value
            given = space.params[name].given
            if given is not None and default[given] is _BAD:
                continue  # that choice is outside the space already
            param = space.active(name, default)
            value = coerce(param, defaults.get(name))
            if value is _BAD:
                outside.append(f"{name}={defaults.get(name)!r} is outside {describe(param)}")
            default[name] = value
        if outside:
            print(f"sagelab hpo: the default configuration is not evaluated: {'; '.join(outside)} (widen "
                  "search_space to include it, or set hpo.evaluate_default=false)", file=sys.stderr)
            default = None
        else:
            points.append(default)
    raw = hpo.get("points_to_evaluate") or []
    if isinstance(raw, (DictConfig, ListConfig)):
        raw = OmegaConf.to_container(raw, resolve=True)
    if not isinstance(raw, list):
        raise ConfigError("hpo.points_to_evaluate", f"must be a list of {{param: value}} mappings, got {raw!r}.")
    for i, point in enumerate(raw):
        at = f"hpo.points_to_evaluate[{i}]"
        if not isinstance(point, Mapping):
            raise ConfigError(at, f"must be a mapping of search-space parameter -> value, got {point!r}.")
        for name in point:
            if name not in space.params:
                raise ConfigError(f"{at}.{name}", f"is not a parameter of search space {space.name} (its "
                                  f"parameters: {', '.join(space.params)}).")
        full: dict[str, Any] = {}
        for name in space.order():
            param = space.active(name, full)
            given = name in point
            value = coerce(param, point[name] if given else defaults.get(name))
            if value is _BAD and given:
                raise ConfigError(f"{at}.{name}", f"is {point[name]!r}, outside the space ({describe(param)}).")
            if value is _BAD:
                raise ConfigError(at, f"leaves out {name}, and its default {defaults.get(name)!r} is outside the "
                                  f"space ({describe(param)}); give {name} a value.")
            full[name] = value
        if full not in points:
            points.append(full)
    return points, default


def warm_points(warm_trials: list[dict[str, Any]], k: int, points: list[dict[str, Any]],
                defaults: Mapping[str, Any], space: SearchSpace) -> list[dict[str, Any]]:
    """The best ``k`` earlier configurations (best first) as full points of this space, not already among
    ``points``; parameters the earlier space lacked take the default's value (or the space's middle)."""
    out: list[dict[str, Any]] = []
    for trial in warm_trials:
        if len(out) >= k:
            break
        full: dict[str, Any] = {}
        for name in space.order():
            param = space.active(name, full)
            value = coerce(param, trial["config"].get(name, _BAD))
            if value is _BAD:
                value = coerce(param, defaults.get(name))
            if value is _BAD:
                value = param.middle()
            full[name] = value
        if full not in points and full not in out:
            out.append(full)
    return out


def warm_k(max_trials: int | None) -> int:
    """How many earlier configurations a Syne Tune / Ray study runs first: at most a quarter of its budget."""
    return max(1, min(5, (max_trials or 20) // 4))


def is_default(config: Mapping[str, Any], default: Mapping[str, Any] | None) -> bool:
    """Whether a trial's configuration is the default one (values are handed through unchanged, so equal)."""
    if not default:
        return False
    for name, value in default.items():
        other = plain(config.get(name))
        if isinstance(value, float) and isinstance(other, (int, float)) and not isinstance(other, bool):
            if abs(float(other) - value) > 1e-12 * max(1.0, abs(value)):
                return False
        elif other != value and str(other) != str(value):
            return False
    return True
