"""The best configuration of a study, as a ready ``conf/experiment/hpo/<name>.yaml``.

The file composes exactly what the chosen trial ran -- the study's command-line
overrides, the sampled values and ``trainer.max_epochs`` -- as a global-package
experiment config, so::

    python run.py +experiment=hpo/<name>

trains that configuration again as an ordinary run. Config groups (``model``,
``instance``, ``task``) become ``override /group: option`` entries of its
defaults list; everything else becomes plain keys. Keys the study only set to
keep trials light (``checkpoint.save_model=false`` ...) are left out.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

from sagelab.config import PROJECT_ROOT
from sagelab.hpo.space import SearchSpace, plain
from sagelab.hpo.spec import StudySpec


def experiment_name(spec: StudySpec) -> str:
    return "hpo_" + re.sub(r"[^A-Za-z0-9_]", "_", spec.name)


def reproduce_command(path: Path) -> str:
    """The command that trains the experiment file at ``path`` again.

    Under ``conf/experiment/`` it is a plain ``+experiment=<sub/name>``; a file in another folder named
    ``experiment`` needs that folder's parent on Hydra's search path.
    """
    path = Path(path).resolve()
    group = PROJECT_ROOT / "conf" / "experiment"
    if path.is_relative_to(group):
        return f"python run.py +experiment={path.relative_to(group).with_suffix('').as_posix()}"
    if path.parent.name == "experiment":
        return f"python run.py +experiment={path.stem} 'hydra.searchpath=[file://{path.parent.parent}]'"
    return f"copy {path} into conf/experiment/, then: python run.py +experiment={path.stem}"


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def experiment_content(
    spec: StudySpec, config: Mapping[str, Any], conf_dir: Path | None = None
) -> tuple[list[dict[str, str]], dict[str, Any], list[str]]:
    """(defaults-list overrides, plain keys, overrides that cannot be expressed) for one trial's config."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    conf_dir = Path(conf_dir) if conf_dir else PROJECT_ROOT / "conf"
    defaults: list[dict[str, str]] = []
    keys: dict[str, Any] = {}
    skipped: list[str] = []
    parsed = OverridesParser.create().parse_overrides(list(spec.base_overrides))
    for text, override in zip(spec.base_overrides, parsed):
        key = override.key_or_group
        value = override.value()
        if override.is_delete() or override.package or key in ("experiment", "hydra") or key.startswith("hydra."):
            skipped.append(text)
        elif (conf_dir / key).is_dir() and isinstance(value, str):
            defaults.append({f"override /{key}": value})
        else:
            _set(keys, key, value)
    space = SearchSpace.from_config(spec.space)
    for name, value in config.items():
        if name not in space.params:
            continue
        param = space.params[name]
        value = plain(value)
        if (conf_dir / param.key).is_dir():
            defaults = [d for d in defaults if f"override /{param.key}" not in d]
            defaults.append({f"override /{param.key}": str(value)})
        else:
            _set(keys, param.key, value)
    for override in spec.length_overrides():  # trainer.max_epochs, or the steps of hpo.resource=steps
        key, value = override.split("=", 1)
        _set(keys, key, None if value == "null" else int(value))
    return defaults, keys, skipped


def write_experiment(
    spec: StudySpec,
    record: Mapping[str, Any],
    objectives: Mapping[str, float],
    out_dir: Path,
    name: str | None = None,
    conf_dir: Path | None = None,
    against: Mapping[str, Any] | None = None,
) -> Path:
    """Write the experiment YAML of trial ``record`` (with its natural objective values) and return its path.

    ``against``: the study summary's comparison with the default configuration
    (:func:`sagelab.hpo.study.against_default`), stated in the header so the file says what it is worth."""
    from omegaconf import OmegaConf

    name = name or experiment_name(spec)
    defaults, keys, skipped = experiment_content(spec, record["config"], conf_dir)
    body: dict[str, Any] = {}
    if defaults:
        body["defaults"] = [*defaults, "_self_"]
    body.update(keys)
    summary = ", ".join(f"{k}={v:.6g}" for k, v in objectives.items())
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.yaml"
    header = [
        "# @package _global_",
        f"# Best configuration of HPO study {spec.name} ({spec.algorithm}, trial {record['trial_id']}):",
        f"#   {summary}",
        f"# Written by sagelab.hpo; reproduce with:  {reproduce_command(path)}",
    ]
    if against and against.get("default"):
        from sagelab.hpo.study import default_line

        header.append(f"# {default_line({**against, 'objectives': list(objectives)})}")
    if against and against.get("reeval"):
        from sagelab.hpo.reeval import report_lines

        header.extend(f"# {text}" for text in report_lines(against["reeval"], next(iter(objectives))))
    if skipped:
        header.append(f"# Not expressible here, left out: {' '.join(skipped)}")
    path.write_text("\n".join(header) + "\n" + OmegaConf.to_yaml(OmegaConf.create(body)))
    return path
