"""What a task may use of the run it belongs to -- and nothing else of the runner.

The runner builds one :class:`TaskContext` per command and hands it to the task's hooks (``predict``,
``on_evaluated`` and its own modes), so the dependency runs one way: runner -> task. A test builds one with
:meth:`TaskContext.offline` and calls a task hook directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from omegaconf import DictConfig

if TYPE_CHECKING:
    from sagelab.tracking import RunRecord


@dataclass
class TaskContext:
    cfg: DictConfig
    output_dir: Path
    #: the command's MLflow run: log_metrics, log_params, log_artifact, log_dict, log_figure, set_tag
    tracker: RunRecord
    #: the task's module with the weights ``checkpoint.load`` names (or this command's last training run)
    load_module: Callable[[], Any]
    is_global_zero: bool = True
    #: the resolved trainer.precision (``auto`` already decided): what inference runs at
    precision: str = "32-true"

    @property
    def run_id(self) -> str | None:
        return self.tracker.run_id

    @classmethod
    def offline(cls, cfg: DictConfig, output_dir: Path, load_module: Callable[[], Any] | None = None) -> TaskContext:
        """A context whose tracker records nothing (tests, notebooks)."""
        from sagelab.tracking import RunRecord

        def no_model() -> Any:
            raise RuntimeError("this context has no model loader")

        return cls(cfg, Path(output_dir), RunRecord(cfg, None, is_global_zero=False), load_module or no_model)
