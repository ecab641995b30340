"""Reading one ``conf/search_space`` entry: its type, key, bounds or values, and (``given``) a range per choice.

Every mistake is a :class:`~sagelab.config.ConfigError` naming the entry's key, raised before any trial runs.
The model these build is :mod:`sagelab.hpo.space`.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping

from sagelab.config import ConfigError, group_options
from sagelab.hpo.space import BRANCH, TYPES, Param, group_folder


def _number(spec: Mapping, field_name: str, at: str) -> float | int:
    if field_name not in spec or spec[field_name] is None:
        raise ConfigError(f"{at}.{field_name}", "is required for this type.")
    value = spec[field_name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        hint = ""
        if isinstance(value, str) and re.match(r"^[0-9.]+e-?[0-9]+$", value):
            hint = f" (YAML reads {value} as text: write it with a decimal point, e.g. 1.0e-6)"
        raise ConfigError(f"{at}.{field_name}", f"must be a number, got {value!r}{hint}.")
    if not math.isfinite(value):
        raise ConfigError(f"{at}.{field_name}", f"must be finite, got {value!r}.")
    return value


def parse_param(name: str, spec: Any, at: str, conditional_ok: bool = False) -> Param:
    if not isinstance(spec, Mapping):
        raise ConfigError(at, f"must be a mapping with type and key, got {spec!r}.")
    allowed = ("type", "key", "low", "high", "values", *(("given", "ranges") if conditional_ok else ()))
    unknown = set(spec) - set(allowed)
    if unknown:
        raise ConfigError(at, f"unknown field(s) {', '.join(sorted(unknown))}; allowed: {', '.join(allowed)}.")
    kind = spec.get("type")
    if kind not in TYPES:
        raise ConfigError(f"{at}.type", f"is {kind!r}; allowed values are {', '.join(TYPES)}.")
    key = spec.get("key")
    if not isinstance(key, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$", key):
        raise ConfigError(f"{at}.key", f"must be a dotted config key such as optim.lr, got {key!r}.")
    if spec.get("given") is not None or spec.get("ranges") is not None:
        given = spec.get("given")
        if not isinstance(given, str) or not given:
            raise ConfigError(f"{at}.given", f"must name the choice parameter this one depends on, got {given!r}.")
        return Param(name=name, type=kind, key=key, given=given)  # its ranges: _branches, once all are parsed
    if kind == "choice":
        values = spec.get("values")
        if not isinstance(values, (list, tuple)) or len(values) == 0:
            raise ConfigError(f"{at}.values", f"must be a non-empty list, got {values!r}.")
        if len(set(map(repr, values))) != len(values):
            raise ConfigError(f"{at}.values", f"has duplicates: {list(values)!r}.")
        for v in values:
            if not isinstance(v, (str, int, float, bool)) or v is None:
                raise ConfigError(f"{at}.values", f"entries must be strings or numbers, got {v!r}.")
        if len({type(v) for v in values}) > 1:
            raise ConfigError(f"{at}.values", f"entries must all have one type, got {list(values)!r}.")
        return Param(name=name, type=kind, key=key, values=tuple(values))
    if spec.get("values") is not None:
        raise ConfigError(f"{at}.values", f"only applies to type: choice (this one is {kind}).")
    low, high = _number(spec, "low", at), _number(spec, "high", at)
    if kind == "randint":
        for fname, v in (("low", low), ("high", high)):
            if float(v) != int(v):
                raise ConfigError(f"{at}.{fname}", f"must be a whole number for randint, got {v!r}.")
        low, high = int(low), int(high)
    if not low < high:
        raise ConfigError(f"{at}.high", f"must be greater than low ({low!r}), got {high!r}.")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"{at}.low", f"must be > 0 for loguniform, got {low!r}.")
    return Param(name=name, type=kind, key=key, low=low, high=high)


def branches(param: Param, spec: Mapping, params: Mapping[str, Param], at: str) -> Param:
    """``param`` (parsed with ``given``) with one distribution per choice of the parameter it is given:
    ``ranges[choice]``, else the parameter's own ``low``/``high``/``values``."""
    parent = params.get(str(param.given))
    if parent is None or parent.type != "choice" or parent.conditional:
        choices = [n for n, p in params.items() if p.type == "choice" and not p.conditional]
        raise ConfigError(f"{at}.given", f"is {param.given!r}, which is not a choice parameter of this space "
                          f"(its choice parameters: {', '.join(choices) or 'none'}).")
    ranges = spec.get("ranges") or {}
    if not isinstance(ranges, Mapping):
        raise ConfigError(f"{at}.ranges", f"must map each {param.given} choice to its range, got {ranges!r}.")
    known = {str(v) for v in parent.values}
    for choice in ranges:
        if str(choice) not in known and str(choice) not in _group_options(parent.key):
            raise ConfigError(f"{at}.ranges.{choice}", f"is not a choice of {param.given} "
                              f"({', '.join(map(str, parent.values))}).")
    # a range for another option of the choice's config group stays unused: the choices were narrowed
    # (e.g. search_space.params.model.values=[bert_tiny]); any other name is a typo, refused above
    own = {k: spec.get(k) for k in ("low", "high", "values") if spec.get(k) is not None}
    branches = []
    for choice in parent.values:
        entry = next((v for c, v in ranges.items() if str(c) == str(choice)), None)
        if entry is None and not own:
            raise ConfigError(f"{at}.ranges", f"gives no range for {param.given}={choice}, and {param.name} has no "
                              "low/high (or values) of its own to fall back on.")
        if entry is not None and (not isinstance(entry, Mapping) or set(entry) - {"low", "high", "values"}):
            raise ConfigError(f"{at}.ranges.{choice}", f"must be a mapping of low/high (or values), got {entry!r}.")
        merged = {"type": param.type, "key": param.key, **(own if entry is None else entry)}
        where = f"{at}.ranges.{choice}" if entry is not None else at
        branch = parse_param(f"{param.name}{BRANCH}{choice}", merged, where)
        branches.append((choice, branch))
    return Param(name=param.name, type=param.type, key=param.key, given=param.given, ranges=tuple(branches))


def _group_options(key: str) -> set[str]:
    """The options of the config group a choice parameter sets (``key: model`` -> conf/model/), else none."""
    folder = group_folder(key)
    return set(group_options(folder)) if folder.is_dir() else set()
