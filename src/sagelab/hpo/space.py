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

A parameter can be conditioned on a ``choice`` parameter (``given``): each choice gets its own range, e.g. a
learning rate per model::

      lr: {type: loguniform, key: optim.lr, given: model,
           ranges: {minilm: {low: 1.0e-5, high: 2.0e-4}, bert_tiny: {low: 5.0e-5, high: 5.0e-3}}}

``low``/``high`` (or ``values``) of the parameter itself, if set, are the range of choices ``ranges`` leaves
out. The backends see one parameter per choice, ``lr@minilm`` and ``lr@bert_tiny`` (:meth:`SearchSpace.flat`):
Optuna suggests only the chosen model's one (define-by-run: the lr is drawn inside that model's range, and TPE
models each range apart); Syne Tune and Ray, which have no conditional spaces, sample all of them and only the
chosen model's is applied (the others are inert). Records keep what the backend sampled; everything a user
reads (overrides, trials.csv, the best configuration) shows the effective ``lr`` (:meth:`SearchSpace.effective`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf

from sagelab.config import PROJECT_ROOT, ConfigError, group_options

TYPES = ("loguniform", "uniform", "randint", "choice")
_PLAIN = re.compile(r"^[A-Za-z0-9_.:/+\-]+$")
_MISSING = object()
BRANCH = "@"  # lr@minilm: the backends' name for the lr of model=minilm


@dataclass(frozen=True)
class Param:
    """One hyperparameter: its name, distribution and the config key it sets."""

    name: str
    type: str
    key: str
    low: float | int | None = None
    high: float | int | None = None
    values: tuple[Any, ...] = ()
    given: str | None = None                     # the choice parameter this one is conditioned on
    ranges: tuple[tuple[Any, "Param"], ...] = ()  # (choice, this parameter's distribution for it)

    @property
    def conditional(self) -> bool:
        return self.given is not None

    def branch(self, choice: Any) -> "Param":
        """The distribution for ``given = choice`` (a parameter named ``<name>@<choice>``)."""
        for option, param in self.ranges:
            if option == choice or str(option) == str(choice):
                return param
        raise KeyError(f"{self.name}: no range for {self.given}={choice!r}")

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

    def middle(self) -> Any:
        """A value in the middle of the range (the geometric middle for loguniform; a choice's first value)."""
        if self.type == "choice":
            return self.values[0]
        if self.type == "loguniform":
            return float((self.low * self.high) ** 0.5)
        middle = (self.low + self.high) / 2
        return int(round(middle)) if self.type == "randint" else float(middle)

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
        from sagelab.hpo.space_parse import branches, parse_param

        params: dict[str, Param] = {}
        keys_seen: dict[str, str] = {}
        for pname, spec in raw.items():
            param = parse_param(str(pname), spec, f"{where}.params.{pname}", conditional_ok=True)
            if param.key in keys_seen:
                raise ConfigError(
                    f"{where}.params.{pname}.key",
                    f"'{param.key}' is already set by parameter '{keys_seen[param.key]}'.",
                )
            keys_seen[param.key] = param.name
            params[param.name] = param
        for pname, param in params.items():
            if param.given is not None:
                params[pname] = branches(param, raw[pname], params, f"{where}.params.{pname}")
        return cls(name=name, params=params)

    # -- checks against the composed config -----------------------------------
    def validate_against(self, cfg: DictConfig, conf_dir: Path | None = None, where: str = "search_space") -> None:
        """Every key must exist in the composed config; every group choice must be a config file."""
        for param in self.params.values():
            at = f"{where}.params.{param.name}"
            current = OmegaConf.select(cfg, param.key, default=_MISSING)
            group_dir = group_folder(param.key, conf_dir)
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

    # -- conditional parameters ------------------------------------------------
    def order(self) -> list[str]:
        """Parameter names with every ``given`` choice before the parameters conditioned on it."""
        return sorted(self.params, key=lambda n: self.params[n].conditional)

    def active(self, name: str, config: Mapping[str, Any]) -> Param:
        """``name``'s distribution for ``config`` (its branch for the chosen ``given`` value)."""
        param = self.params[name]
        return param.branch(plain(config.get(param.given))) if param.conditional else param

    def flat(self) -> dict[str, Param]:
        """The parameters the backends sample: a conditional parameter as one per choice (``lr@minilm``)."""
        out: dict[str, Param] = {}
        for name, param in self.params.items():
            out.update({p.name: p for _, p in param.ranges} if param.conditional else {name: param})
        return out

    def effective(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """What a configuration sets, by parameter name: a conditional parameter takes its chosen branch's value
        (``lr`` = ``lr@minilm`` when model=minilm). An effective configuration is returned as it is."""
        out: dict[str, Any] = {}
        for name, param in self.params.items():
            if name in config:
                out[name] = plain(config[name])
            elif param.conditional and param.given in config:
                branch = self.active(name, config).name
                if branch in config:
                    out[name] = plain(config[branch])
        return out

    def to_backend(self, config: Mapping[str, Any], fill: bool = False) -> dict[str, Any]:
        """An effective configuration as the backends name it (``lr`` -> ``lr@<chosen model>``). ``fill``: give
        the other branches a value too (their middle), for backends whose configs hold every flat parameter."""
        out: dict[str, Any] = {}
        for name, param in self.params.items():
            if not param.conditional:
                if name in config:
                    out[name] = config[name]
                continue
            chosen = self.active(name, config).name if param.given in config else None
            for _, branch in param.ranges:
                if branch.name == chosen and name in config:
                    out[branch.name] = config[name]
                elif fill:
                    out[branch.name] = branch.middle()
        return out

    # -- translation ----------------------------------------------------------
    def syne_tune(self) -> dict[str, Any]:
        return {name: p.to_syne_tune() for name, p in self.flat().items()}

    def ray(self) -> dict[str, Any]:
        return {name: p.to_ray() for name, p in self.flat().items()}

    def optuna(self) -> dict[str, Any]:
        return {name: p.to_optuna() for name, p in self.flat().items()}

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Sample a configuration through an Optuna trial (records it in the study), define-by-run: a
        conditional parameter is suggested under its chosen branch's name, within that branch's range."""
        out: dict[str, Any] = {}
        for name in self.order():
            p = self.active(name, out)
            if p.type == "choice":
                out[p.name] = trial.suggest_categorical(p.name, list(p.values))
            elif p.type == "randint":
                out[p.name] = trial.suggest_int(p.name, int(p.low), int(p.high))
            else:
                out[p.name] = trial.suggest_float(p.name, float(p.low), float(p.high), log=p.type == "loguniform")
        return out

    def overrides(self, config: Mapping[str, Any]) -> list[str]:
        """Hydra overrides for a sampled configuration (names not in the space are ignored)."""
        return [self.params[n].override(v) for n, v in self.effective(config).items()]

    def keys(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """``{config key: value}`` for a sampled configuration."""
        return {self.params[n].key: v for n, v in self.effective(config).items()}

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
            if p.conditional:
                entry["given"] = p.given
                entry["ranges"] = {str(c): _bounds(b) for c, b in p.ranges}
            else:
                entry.update(_bounds(p))
            params[name] = entry
        return {"name": self.name, "params": params}


def group_folder(key: str, conf_dir: Path | None = None) -> Path:
    """The folder of the config group a parameter's key would name (``model`` -> conf/model/); may not exist."""
    return (Path(conf_dir) if conf_dir else PROJECT_ROOT / "conf") / str(key).replace(".", "/")


def _bounds(p: Param) -> dict[str, Any]:
    return {"values": list(p.values)} if p.type == "choice" else {"low": p.low, "high": p.high}


def plain(value: Any) -> Any:
    """numpy scalars -> Python scalars, so they print and serialise plainly."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value
