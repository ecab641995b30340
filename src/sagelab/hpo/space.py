"""One backend-neutral search-space schema, translated to Syne Tune, Optuna and Ray Tune.

A search space is a ``conf/search_space/<name>.yaml`` whose ``params`` map a
hyperparameter name to its distribution and the config key it sets::

    params:
      lr:         {type: loguniform, low: 1.0e-6, high: 1.0e-4, key: optim.lr}
      batch_size: {type: randint, low: 16, high: 48, key: optim.batch_size}
      model:      {type: choice, values: [minilm, bert_tiny], key: model}

``key`` is any dotted config key, or a config group (``model``, ``instance``)
whose choices are option names of that group. Bounds are inclusive for every
type, as in both Syne Tune and Optuna. Everything is checked here, before any
trial starts, so a typo in a space never costs a trial.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf

from sagelab.config import PROJECT_ROOT, ConfigError, group_options

TYPES = ("loguniform", "uniform", "randint", "choice")
_PLAIN = re.compile(r"^[A-Za-z0-9_.:/+\-]+$")
_MISSING = object()


@dataclass(frozen=True)
class Param:
    """One hyperparameter: its name, distribution and the config key it sets."""

    name: str
    type: str
    key: str
    low: float | int | None = None
    high: float | int | None = None
    values: tuple[Any, ...] = ()

    # -- translation ----------------------------------------------------------
    def to_syne_tune(self) -> Any:
        from syne_tune import config_space as cs

        if self.type == "loguniform":
            return cs.loguniform(float(self.low), float(self.high))
        if self.type == "uniform":
            return cs.uniform(float(self.low), float(self.high))
        if self.type == "randint":
            return cs.randint(int(self.low), int(self.high))
        return cs.choice(list(self.values))

    def to_optuna(self) -> Any:
        from optuna import distributions as od

        if self.type == "loguniform":
            return od.FloatDistribution(float(self.low), float(self.high), log=True)
        if self.type == "uniform":
            return od.FloatDistribution(float(self.low), float(self.high))
        if self.type == "randint":
            return od.IntDistribution(int(self.low), int(self.high))
        return od.CategoricalDistribution(list(self.values))

    def to_ray(self) -> Any:
        """Ray Tune's domain (bounds inclusive, as here: Ray's ``randint`` excludes its upper bound)."""
        from ray import tune

        if self.type == "loguniform":
            return tune.loguniform(float(self.low), float(self.high))
        if self.type == "uniform":
            return tune.uniform(float(self.low), float(self.high))
        if self.type == "randint":
            return tune.randint(int(self.low), int(self.high) + 1)
        return tune.choice(list(self.values))

    def contains(self, value: Any) -> bool:
        if self.type == "choice":
            return value in self.values
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return False
        return self.low <= value <= self.high

    def override(self, value: Any) -> str:
        """The Hydra command-line override that sets this value, e.g. ``optim.lr=3.1e-05``."""
        return f"{self.key}={format_value(value)}"


def format_value(value: Any) -> str:
    """Render a value for a Hydra override: numbers exactly, odd strings quoted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if _PLAIN.match(text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass
class SearchSpace:
    """A validated search space: ``params`` by name, in the order of the YAML file."""

    name: str
    params: dict[str, Param] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.params

    # -- parsing --------------------------------------------------------------
    @classmethod
    def from_config(cls, node: Mapping | DictConfig | None, where: str = "search_space") -> "SearchSpace":
        """Parse and check the schema itself (types, bounds); raises ConfigError naming the key."""
        if node is None:
            return cls(name="none")
        data = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
        name = str(data.get("name", "none"))
        raw = data.get("params") or {}
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where}.params", f"must be a mapping of name -> distribution, got {raw!r}.")
        params: dict[str, Param] = {}
        keys_seen: dict[str, str] = {}
        for pname, spec in raw.items():
            param = _parse_param(str(pname), spec, f"{where}.params.{pname}")
            if param.key in keys_seen:
                raise ConfigError(
                    f"{where}.params.{pname}.key",
                    f"'{param.key}' is already set by parameter '{keys_seen[param.key]}'.",
                )
            keys_seen[param.key] = param.name
            params[param.name] = param
        return cls(name=name, params=params)

    # -- checks against the composed config -----------------------------------
    def validate_against(self, cfg: DictConfig, conf_dir: Path | None = None, where: str = "search_space") -> None:
        """Every key must exist in the composed config; every group choice must be a config file."""
        conf_dir = Path(conf_dir) if conf_dir else PROJECT_ROOT / "conf"
        for param in self.params.values():
            at = f"{where}.params.{param.name}"
            current = OmegaConf.select(cfg, param.key, default=_MISSING)
            group_dir = conf_dir / param.key.replace(".", "/")
            if group_dir.is_dir() and (current is _MISSING or isinstance(current, DictConfig)):
                if param.type != "choice":
                    raise ConfigError(f"{at}.type", f"'{param.key}' is a config group: use type: choice.")
                options = group_options(group_dir)
                for value in param.values:
                    if str(value) not in options:
                        raise ConfigError(
                            f"{at}.values",
                            f"'{value}' is not an option of group '{param.key}' "
                            f"(no {group_dir / f'{value}.yaml'}); options: {', '.join(options)}.",
                        )
                continue
            if current is _MISSING:
                raise ConfigError(f"{at}.key", f"'{param.key}' is not a key of the composed config.")
            if isinstance(current, DictConfig):
                raise ConfigError(f"{at}.key", f"'{param.key}' is a section, not a value or a config group.")

    # -- translation ----------------------------------------------------------
    def syne_tune(self) -> dict[str, Any]:
        return {name: p.to_syne_tune() for name, p in self.params.items()}

    def ray(self) -> dict[str, Any]:
        return {name: p.to_ray() for name, p in self.params.items()}

    def optuna(self) -> dict[str, Any]:
        return {name: p.to_optuna() for name, p in self.params.items()}

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Sample a configuration through an Optuna trial (records it in the study)."""
        out: dict[str, Any] = {}
        for name, p in self.params.items():
            if p.type == "choice":
                out[name] = trial.suggest_categorical(name, list(p.values))
            elif p.type == "randint":
                out[name] = trial.suggest_int(name, int(p.low), int(p.high))
            else:
                out[name] = trial.suggest_float(name, float(p.low), float(p.high), log=p.type == "loguniform")
        return out

    def overrides(self, config: Mapping[str, Any]) -> list[str]:
        """Hydra overrides for a sampled configuration (names not in the space are ignored)."""
        return [self.params[n].override(plain(v)) for n, v in config.items() if n in self.params]

    def keys(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """``{config key: value}`` for a sampled configuration."""
        return {self.params[n].key: plain(v) for n, v in config.items() if n in self.params}

    def defaults(self, cfg: DictConfig) -> dict[str, Any]:
        """The composed config's own values for each parameter (the "default configuration")."""
        out: dict[str, Any] = {}
        for name, p in self.params.items():
            value = OmegaConf.select(cfg, p.key, default=None)
            if isinstance(value, DictConfig):
                value = value.get("name")
            out[name] = value
        return out

    def to_dict(self) -> dict[str, Any]:
        params = {}
        for name, p in self.params.items():
            entry: dict[str, Any] = {"type": p.type, "key": p.key}
            if p.type == "choice":
                entry["values"] = list(p.values)
            else:
                entry.update(low=p.low, high=p.high)
            params[name] = entry
        return {"name": self.name, "params": params}


def plain(value: Any) -> Any:
    """numpy scalars -> Python scalars, so they print and serialise plainly."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value


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


def _parse_param(name: str, spec: Any, at: str) -> Param:
    if not isinstance(spec, Mapping):
        raise ConfigError(at, f"must be a mapping with type and key, got {spec!r}.")
    unknown = set(spec) - {"type", "key", "low", "high", "values"}
    if unknown:
        raise ConfigError(at, f"unknown field(s) {', '.join(sorted(unknown))}; allowed: type, key, low, high, values.")
    kind = spec.get("type")
    if kind not in TYPES:
        raise ConfigError(f"{at}.type", f"is {kind!r}; allowed values are {', '.join(TYPES)}.")
    key = spec.get("key")
    if not isinstance(key, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$", key):
        raise ConfigError(f"{at}.key", f"must be a dotted config key such as optim.lr, got {key!r}.")
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
    if "values" in spec:
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
