"""A study, fully resolved: what to search, how, with which budget, and how a trial is launched.

:func:`build_spec` turns the composed config (``hpo.*``, ``search_space.*``
and the command line that composed it) into a :class:`StudySpec` and checks
all of it -- algorithm, objectives, budgets, and the search space against the
composed config -- so every mistake surfaces before the first trial.

The spec is written to ``<study dir>/spec.json``; trial processes read it
back (through :class:`sagelab.hpo.callback.HPOCallback`) to know what to
report. A study's name is derived from the command (budget keys left out), so
running the same command again resumes the same study, and raising
``hpo.max_trials`` on the command line extends it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf

from sagelab.config import PROJECT_ROOT, ConfigError, group_options
from sagelab.hpo.inherit import command_overrides, split_overrides, trial_threads
from sagelab.hpo.objectives import Objective, parse_objectives
from sagelab.hpo.space import SearchSpace

# algorithm -> (backend, supports several objectives, multi-fidelity)
ALGORITHMS: dict[str, tuple[str, bool, bool]] = {
    "asha": ("syne_tune", False, True),
    "moasha": ("syne_tune", True, True),
    "random": ("syne_tune", True, False),
    "bo": ("syne_tune", False, False),
    "nsga2": ("optuna", True, False),
    "tpe": ("optuna", True, True),  # pruning (multi-fidelity) only with one objective
}
# hpo.backend=ray runs these with Ray Tune's own schedulers (sagelab.hpo.ray_study explains the choice)
RAY_ALGORITHMS = ("asha", "random")
# hpo.latency: warm-up calls, then timed calls (the fastest counts) of predict_step on the first validation batch
LATENCY_DEFAULTS = {"warmup": 2, "repeats": 10}
REEVAL_PREFIX = "reeval-"  # a re-evaluation run (sagelab.hpo.reeval): reeval/<id>, reports to no scheduler
DEFAULT_TRIAL_OVERRIDES = (
    "checkpoint.save_model=false",
    "checkpoint.every_n_steps=0",
    "trainer.enable_progress_bar=false",
)


@dataclass
class StudySpec:
    name: str
    algorithm: str
    backend: str
    study_dir: str
    objectives: list[dict[str, str]]
    task_name: str
    task_metric: str
    task_mode: str
    space: dict[str, Any]
    defaults: dict[str, Any]
    base_overrides: list[str]
    trial_overrides: list[str]
    command: list[str]
    max_trials: int | None
    max_wallclock_s: float | None
    max_cost_usd: float | None
    n_workers: int
    max_resource: int
    grace_period: int
    reduction_factor: float
    seed: int
    max_failures: int | None
    tracking_uri: str
    experiment_name: str
    artifact_location: str
    experiment_dir: str
    latency: dict[str, int] = field(default_factory=lambda: dict(LATENCY_DEFAULTS))
    keep_checkpoints: bool = False
    trial_timeout_s: float | None = None  # a trial running longer is stopped and recorded as failed
    ray_address: str | None = None  # backend "ray": the cluster to connect to (None: a local Ray)
    identity: str = ""  # digest of what defines the study (not its budget): a resume must match it
    parent_run_id: str | None = None
    storage: str | None = None   # hpo.storage: an RDB shared by every worker of the study (None: optuna.db here)
    heartbeat_s: int = 10        # a shared study's workers beat this often for their running trial...
    grace_s: int = 30            # ...and a trial whose beat is older is failed and run again by another worker
    trial_threads: int | None = None  # instance.threads of each trial (n_workers > 1: the cores split over them)
    study_overrides: list[str] = field(default_factory=list)  # the command's own overrides (worker processes)
    # the study's first trials (sagelab.hpo.seeding): the default configuration (None: not evaluated), then
    # hpo.points_to_evaluate; warm_trials: hpo.warm_start's earlier trials, best first
    points: list[dict[str, Any]] = field(default_factory=list)
    default_config: dict[str, Any] | None = None
    warm_start: str | None = None
    warm_trials: list[dict[str, Any]] = field(default_factory=list)
    resource: str = "epochs"  # a round is an epoch, or (steps) round_steps optimizer steps
    round_steps: int | None = None
    accumulate: int = 1  # trainer.accumulate_grad_batches: batches per optimizer step
    reeval_seeds: list[int] = field(default_factory=list)  # sagelab.hpo.reeval (empty: off)
    reeval_top_k: int = 3

    # -- derived ------------------------------------------------------------------
    @property
    def dir(self) -> Path:
        return Path(self.study_dir)

    @property
    def spec_path(self) -> Path:
        return self.dir / "spec.json"

    @property
    def results_dir(self) -> Path:
        return self.dir / "results"

    @property
    def optuna_storage(self) -> str:
        return self.storage or f"sqlite:///{self.dir / 'optuna.db'}"

    def objective_list(self) -> list[Objective]:
        return [Objective(o["name"], o["mode"]) for o in self.objectives]

    def search_space(self) -> SearchSpace:
        return SearchSpace.from_config(self.space)

    @property
    def multi_fidelity(self) -> bool:
        return ALGORITHMS[self.algorithm][2] and not (self.algorithm == "tpe" and len(self.objectives) > 1)

    def length_overrides(self) -> list[str]:
        """How long a trial trains and how often it reports: ``max_resource`` epochs, or (``hpo.resource=steps``)
        ``max_resource`` rounds of ``round_steps`` optimizer steps, validated every round across epoch ends
        (``max_epochs`` is then only an upper bound that ``max_steps`` reaches first)."""
        if self.resource != "steps":
            return [f"trainer.max_epochs={self.max_resource}"]
        steps = self.max_resource * int(self.round_steps or 1)
        return [f"trainer.max_steps={steps}", f"trainer.max_epochs={steps * self.accumulate}",
                f"trainer.val_check_interval={int(self.round_steps or 1) * self.accumulate}",
                "trainer.check_val_every_n_epoch=null"]

    def first_configs(self) -> list[dict[str, Any]]:
        """What a study without a model of earlier trials (Syne Tune, Ray) runs first, in order: the default,
        the given points, then the best few configurations of the warm-start study."""
        from sagelab.hpo.seeding import warm_k, warm_points

        extra = warm_points(self.warm_trials, warm_k(self.max_trials), self.points, self.defaults,
                            self.search_space())
        return [dict(p) for p in [*self.points, *extra]]

    def trial_dir(self, trial_id: int | str) -> Path:
        """``trials/<id>``, or ``reeval/<id>`` for a re-evaluation run (:data:`REEVAL_PREFIX`: no search trial)."""
        return self.dir / ("reeval" if str(trial_id).startswith(REEVAL_PREFIX) else "trials") / str(trial_id)

    def trial_argv(self, trial_id: int | str, config: dict[str, Any], extra: Sequence[str] = ()) -> list[str]:
        """The command of one trial: an ordinary sagelab run plus the reporting callback."""
        tdir = self.trial_dir(trial_id)
        argv = [
            *self.command,
            *self.base_overrides,
            *self.search_space().overrides(config),
            *self.trial_overrides,
            *self.length_overrides(),
            "hpo=none",
            "search_space=none",
            f"checkpoint.dir={tdir / 'checkpoints'}",
            f"hydra.run.dir={tdir / 'hydra'}",
            f"logger.run_name={self.name}-trial-{trial_id}",
            "+callbacks.hpo._target_=sagelab.hpo.callback.HPOCallback",
            f"+callbacks.hpo.spec={self.spec_path}",
            f"+callbacks.hpo.trial={trial_id}",
            "+callbacks.hpo.price_per_hour=${instance.price_per_hour}",
        ]
        if self.trial_threads is not None:
            argv.append(f"instance.threads={self.trial_threads}")
        if self.parent_run_id:
            argv.append(f"logger.parent_run_id={self.parent_run_id}")
        return [*argv, *extra]

    # -- persistence ----------------------------------------------------------------
    def check_resumable(self) -> None:
        """A study folder may only be continued by a command that defines the same study."""
        if not self.spec_path.exists():
            return
        previous = json.loads(self.spec_path.read_text()).get("identity")
        if previous and previous != self.identity:
            raise ConfigError(
                "hpo.study_name",
                f"study '{self.name}' in {self.dir} was started with a different setup (task, overrides, space, "
                "objectives or fidelity); give this one another hpo.study_name, or delete that folder.",
            )

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.spec_path.with_name(f".spec.{os.getpid()}.tmp")  # workers of a shared study write it too
        tmp.write_text(json.dumps(asdict(self), indent=2, default=str))
        tmp.replace(self.spec_path)

    @classmethod
    def load(cls, path: str | Path) -> "StudySpec":
        return cls(**json.loads(Path(path).read_text()))


def _opt_number(hpo: DictConfig, key: str, kind: type, positive: bool = True) -> Any:
    value = hpo.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and float(value) != int(value)):
        raise ConfigError(f"hpo.{key}", f"must be a {'whole ' if kind is int else ''}number or null, got {value!r}.")
    if positive and value <= 0:
        raise ConfigError(f"hpo.{key}", f"must be greater than zero, got {value!r}.")
    return kind(value)


def study_folder(root: Path, name: str) -> Path:
    """``<hpo.dir>/<name>``: a study's folder is its own, inside hpo.dir (resume, lock and clean-up rely on it)."""
    root = root.resolve()
    if name in (".", "..") or Path(name).is_absolute() or "/" in name:
        raise ConfigError("hpo.study_name", f"'{name}' is a path, not a name: a study lives in a folder of its own "
                          f"inside hpo.dir ({root}); give a plain name such as my-study.")
    if not re.match(r"^[A-Za-z0-9_.\-]+$", name):
        raise ConfigError("hpo.study_name", f"'{name}' may only hold letters, digits, '.', '_' and '-'.")
    return root / name


def choose_backend(hpo: DictConfig, algorithm: str, own: str) -> str:
    """``hpo.backend``: ``auto`` (or the algorithm's own library by name) keeps ``own``; ``ray`` runs the
    algorithms Ray Tune schedules natively (:data:`RAY_ALGORITHMS`)."""
    chosen = str(hpo.get("backend") or "auto")
    if hpo.get("ray_address") and chosen != "ray":
        raise ConfigError("hpo.ray_address", f"is set, but hpo.backend is {chosen}; add hpo.backend=ray to run "
                          "the study on that Ray cluster.")
    if chosen in ("auto", own):
        return own
    if chosen == "ray":
        if algorithm not in RAY_ALGORITHMS:
            raise ConfigError("hpo.backend", f"ray runs hpo={' or hpo='.join(RAY_ALGORITHMS)} (Ray Tune's own "
                              f"schedulers), not hpo={algorithm}; run {algorithm} with hpo.backend=auto, or use "
                              "hpo=random for several objectives on Ray.")
        return "ray"
    raise ConfigError("hpo.backend", f"is '{chosen}', but hpo={algorithm} runs on {own}; use auto, {own} or ray.")


def build_spec(cfg: DictConfig, overrides: Sequence[str] | None = None) -> StudySpec:
    """Check ``hpo.*`` and ``search_space.*`` against the composed config and resolve the study."""
    hpo = cfg.hpo
    algorithm = str(hpo.name)
    if algorithm not in ALGORITHMS:
        raise ConfigError("hpo.name", f"is '{algorithm}'; allowed values are none, {', '.join(ALGORITHMS)}.")
    backend, multi_ok, _ = ALGORITHMS[algorithm]
    backend = choose_backend(hpo, algorithm, backend)
    objectives = parse_objectives(hpo)
    if len(objectives) > 1 and not multi_ok:
        raise ConfigError(
            "hpo.metrics",
            f"{algorithm} optimises one objective, got {[o.name for o in objectives]}; "
            "use hpo=moasha, hpo=random or hpo=nsga2 for several.",
        )
    space = SearchSpace.from_config(cfg.get("search_space"))
    if space.empty:
        spaces = [s for s in group_options(PROJECT_ROOT / "conf" / "search_space") if s != "none"]
        raise ConfigError("search_space", f"is empty (search_space=none): name what to search, one of "
                          f"{', '.join(spaces)} (e.g. search_space=glue_instances for error/latency/cost).")
    space.validate_against(cfg)
    if "error" in [o.name for o in objectives] and not OmegaConf.select(cfg, "task.metric", default=None):
        raise ConfigError("task.metric", "is needed for the 'error' objective but the task sets none.")

    max_trials = _opt_number(hpo, "max_trials", int)
    max_wall = _opt_number(hpo, "max_wallclock_s", float)
    max_cost = _opt_number(hpo, "max_cost_usd", float)
    if max_trials is None and max_wall is None and max_cost is None:
        raise ConfigError("hpo.max_trials", "a study needs a budget: set max_trials, max_wallclock_s or max_cost_usd.")
    n_workers = _opt_number(hpo, "n_workers", int) or 1
    max_resource = _opt_number(hpo, "max_resource", int) or int(cfg.trainer.max_epochs)
    grace = _opt_number(hpo, "grace_period", int) or 1
    if grace > max_resource:
        raise ConfigError("hpo.grace_period", f"({grace}) must not exceed hpo.max_resource ({max_resource}).")
    reduction = _opt_number(hpo, "reduction_factor", float) or 3.0
    if reduction <= 1:
        raise ConfigError("hpo.reduction_factor", f"must be greater than 1, got {reduction}.")
    seed = hpo.get("seed")
    seed = int(cfg.seed if seed is None else seed)

    resource, round_steps = str(hpo.get("resource") or "epochs"), _opt_number(hpo, "round_steps", int)
    if resource == "steps" and round_steps is None:
        raise ConfigError("hpo.round_steps", "is needed with hpo.resource=steps: the optimizer steps in one round "
                          "(one report, one rung unit), e.g. hpo.round_steps=50.")
    if resource != "steps" and round_steps is not None:
        raise ConfigError("hpo.round_steps", f"only applies to hpo.resource=steps (this study's resource is "
                          f"{resource}).")
    raw = list(overrides) if overrides is not None else command_overrides(cfg)
    from sagelab.hpo.inherit import STEP_KEYS, STUDY_KEYS

    base, dropped = split_overrides(raw, space, STUDY_KEYS + (STEP_KEYS if resource == "steps" else ()))
    if dropped:
        print(f"sagelab hpo: the study sets these itself, ignoring {' '.join(dropped)}", file=sys.stderr)
    trial_overrides = [str(o) for o in (hpo.get("trial_overrides") or DEFAULT_TRIAL_OVERRIDES)]
    command = [str(c) for c in (hpo.get("command") or [sys.executable, str(PROJECT_ROOT / "run.py")])]

    identity = {
        "algorithm": algorithm,
        "objectives": [(o.name, o.mode) for o in objectives],
        "space": space.to_dict(),
        "base": sorted(base),
        "max_resource": max_resource,
        "grace": grace,
        "reduction": reduction,
        "seed": seed,
    }
    if resource == "steps":  # (left out for epochs, so the names of existing studies do not change)
        identity["resource"] = [resource, round_steps]
    digest = hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:8]
    name = str(hpo.get("study_name") or f"{algorithm}-{cfg.task.name}-{space.name}-{digest}")
    study_dir = study_folder(Path(str(hpo.get("dir") or PROJECT_ROOT / "mlruns" / "hpo")), name)
    if backend == "syne_tune" and re.search(r"\s", str(study_dir) + sys.executable):
        raise ConfigError("hpo.dir", f"'{study_dir}' contains a space, which Syne Tune's LocalBackend cannot pass.")
    storage = _storage(hpo, algorithm, backend)
    heartbeat_s, grace_s = _opt_number(hpo, "heartbeat_s", int) or 10, _opt_number(hpo, "grace_s", int) or 30
    if grace_s <= heartbeat_s:
        raise ConfigError("hpo.grace_s", f"({grace_s}) must exceed hpo.heartbeat_s ({heartbeat_s}), or live trials "
                          "would be taken for dead ones.")
    from sagelab.hpo.reeval import options
    from sagelab.hpo.seeding import initial_points
    from sagelab.hpo.warm_start import resolve

    reeval_seeds, reeval_top_k = options(hpo, storage)
    defaults = space.defaults(cfg)
    points, default_config = initial_points(hpo, space, defaults)
    warm_ref, warm_trials = resolve(hpo, name, study_dir.parent, str(cfg.logger.tracking_uri), space, objectives,
                                    defaults)
    latency = dict(OmegaConf.to_container(hpo.get("latency") or {}, resolve=True))
    for key in latency:
        if key not in LATENCY_DEFAULTS:  # batch_size is gone: predict_step gets the whole first validation batch
            hint = "; latency is timed on the whole first validation batch (sized by the task's eval batch size)"
            raise ConfigError(f"hpo.latency.{key}", f"is not a latency setting (allowed: "
                              f"{', '.join(LATENCY_DEFAULTS)}){hint if key == 'batch_size' else ''}.")
    return StudySpec(
        name=name,
        algorithm=algorithm,
        backend=backend,
        study_dir=str(study_dir),
        objectives=[{"name": o.name, "mode": o.mode} for o in objectives],
        task_name=str(cfg.task.name),
        task_metric=str(OmegaConf.select(cfg, "task.metric", default="") or ""),
        task_mode=str(OmegaConf.select(cfg, "task.metric_mode", default="max") or "max"),
        space=space.to_dict(),
        defaults=defaults,
        base_overrides=base,
        trial_overrides=trial_overrides,
        command=command,
        max_trials=max_trials,
        max_wallclock_s=max_wall,
        max_cost_usd=max_cost,
        n_workers=n_workers,
        max_resource=max_resource,
        grace_period=grace,
        reduction_factor=reduction,
        seed=seed,
        max_failures=_opt_number(hpo, "max_failures", int, positive=False),
        tracking_uri=str(cfg.logger.tracking_uri),
        experiment_name=str(cfg.logger.experiment_name),
        artifact_location=str(cfg.logger.get("artifact_location") or PROJECT_ROOT / "mlruns" / "artifacts"),
        experiment_dir=str(hpo.get("experiment_dir") or PROJECT_ROOT / "conf" / "experiment" / "hpo"),
        latency={**LATENCY_DEFAULTS, **latency},
        keep_checkpoints=bool(hpo.get("keep_checkpoints", False)),
        trial_timeout_s=_opt_number(hpo, "trial_timeout_s", float),
        ray_address=str(hpo.get("ray_address")) if hpo.get("ray_address") else None,
        identity=digest,
        storage=storage,
        heartbeat_s=heartbeat_s,
        grace_s=grace_s,
        trial_threads=trial_threads(n_workers, base, space, backend),
        study_overrides=[str(o) for o in raw],
        points=points,
        default_config=default_config,
        warm_start=warm_ref,
        warm_trials=warm_trials,
        resource=resource,
        round_steps=round_steps,
        accumulate=int(OmegaConf.select(cfg, "trainer.accumulate_grad_batches", default=1) or 1),
        reeval_seeds=reeval_seeds, reeval_top_k=reeval_top_k,
    )


def _storage(hpo: DictConfig, algorithm: str, backend: str) -> str | None:
    """``hpo.storage`` checked: an RDB URL, and only for the Optuna algorithms."""
    url = hpo.get("storage")
    if url is None:
        return None
    if backend != "optuna":
        optuna_names = ", ".join(a for a, (b, _, _) in ALGORITHMS.items() if b == "optuna")
        raise ConfigError("hpo.storage", f"is an Optuna storage, and hpo={algorithm} runs on "
                          f"{'Ray Tune' if backend == 'ray' else 'Syne Tune'}, which keeps no such storage; drop "
                          f"hpo.storage or use an Optuna algorithm ({optuna_names}).")
    from sagelab.hpo.storage import check_url

    return check_url(str(url))
