"""Which of the study command's overrides its trials inherit.

A trial is the study's own command line plus the sampled values and the keys the study sets itself
(:meth:`~sagelab.hpo.spec.StudySpec.trial_argv`). A command-line value for a key the study sets, or for a key
the search space samples, would be ambiguous: it is dropped, and the study says so. With several trials at once,
each also gets its share of the cores (:func:`trial_threads`).
"""

from __future__ import annotations

from typing import Sequence

from omegaconf import DictConfig

from sagelab.hpo.space import SearchSpace

# keys the study sets on every trial itself; a command-line value for them would be ambiguous
STUDY_KEYS = ("hpo", "search_space", "trainer.max_epochs", "checkpoint.dir", "hydra.run.dir", "callbacks.hpo",
              "logger.run_name")
# and with hpo.resource=steps, these too (the length of a round and of a trial)
STEP_KEYS = ("trainer.max_steps", "trainer.val_check_interval", "trainer.check_val_every_n_epoch")


def override_key(override: str) -> str:
    """``+a.b=1`` -> ``a.b``; ``~a`` -> ``a``."""
    key = override.split("=", 1)[0].lstrip("+~")
    return key.split("@", 1)[0]


def _matches(key: str, prefixes: Sequence[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def command_overrides(cfg: DictConfig) -> list[str]:
    """The overrides of the command that composed ``cfg`` (Hydra's record), or ``hpo.base_overrides``."""
    explicit = cfg.hpo.get("base_overrides")
    if explicit is not None:
        return [str(o) for o in explicit]
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        overrides = HydraConfig.get().overrides
        # config folders the command added (hydra.searchpath) must reach the trials, or their groups vanish
        searchpath = [str(o) for o in overrides.hydra if str(o).startswith("hydra.searchpath=")]
        return [*searchpath, *(str(o) for o in overrides.task)]
    return []


def split_overrides(overrides: Sequence[str], space: SearchSpace,
                    study_keys: Sequence[str] = STUDY_KEYS) -> tuple[list[str], list[str]]:
    """(overrides the trials inherit, overrides dropped because the study or the space sets them)."""
    space_keys = {p.key for p in space.params.values()}
    kept, dropped = [], []
    for o in overrides:
        key = override_key(o)
        # a sampled group (model) replaces `model=...`, not `model.config_overrides.x=...`
        if _matches(key, study_keys) or key in space_keys:
            if not _matches(key, ("hpo", "search_space")):
                dropped.append(o)
            continue
        kept.append(o)
    return kept, dropped


def trial_threads(n_workers: int, base: Sequence[str], space: SearchSpace, backend: str = "") -> int | None:
    """With several trials at once, each gets its share of the cores (``instance.threads``) so they do not fight
    over them; None when one runs at a time or the command or the space sets ``instance.threads`` itself. On Ray a
    trial gets the CPUs it asked Ray for, on whichever node it lands (not a share of this machine's cores)."""
    if n_workers <= 1:
        return None
    if any(override_key(o) == "instance.threads" for o in base) or \
            any(p.key == "instance.threads" for p in space.params.values()):
        return None
    if backend == "ray":
        from sagelab.hpo.ray_study import CPUS_PER_TRIAL

        return CPUS_PER_TRIAL
    from sagelab.hardware import available_cores

    return max(1, available_cores() // n_workers)
