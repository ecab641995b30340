"""NLP data drift: ``python run.py task=drift mode=baseline|monitor|report``.

The seed (SageMaker custom Model Monitor) embeds training sentences with a
fine-tuned BERT, scores every captured request by its average cosine similarity
to them and flags records under a fixed 0.5. Here:

* ``mode=baseline`` embeds ``task.baseline_source`` with ``model=`` (optionally
  with the weights of a sagelab fine-tune, ``task.encoder_checkpoint``), holds
  out ``task.calibration_fraction`` of it to calibrate the threshold, and logs
  the baseline folder (:mod:`sagelab.tasks.drift.baseline`) to MLflow;
* ``mode=monitor`` reads ``task.capture``, embeds it with the baseline's own
  model and pooling, scores each record, runs the MMD permutation test and the
  domain classifier per window, and logs ``constraint_violations.json``,
  ``statistics.json``, ``score_histogram.png`` and ``scores.jsonl``;
* ``mode=report`` does both in one run.

No Lightning training happens, so ``lightning_modes`` is empty. This module is the cheap part of the family
(the CLI imports it to validate): numpy, torch and the other drift modules load inside the modes.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from omegaconf import MISSING, OmegaConf

from sagelab.config import ConfigError
from sagelab.checks import auto_or_number, one_of, open_fraction, positive
from sagelab.schema import TaskBlock, checked
from sagelab.tasks.base import Mode, Task
from sagelab.tracking import CHECKPOINT_ARTIFACTS, looks_like_run_id, resolve_artifact

if TYPE_CHECKING:
    from sagelab.context import TaskContext
    from sagelab.diagnose import DiagnoseInputs
    from sagelab.tasks.drift.baseline import Baseline

POOLINGS = ("second_to_last_mean", "last_mean", "cls")
MODES = ("baseline", "monitor", "report")


@dataclass(kw_only=True)
class DriftConfig(TaskBlock):
    """The ``task:`` block of ``conf/task/drift.yaml`` (which holds the defaults and what each key means)."""

    default_mode: str = checked(MISSING, one_of(*MODES))
    # -- baseline
    baseline_source: Optional[str] = MISSING
    text_column: str = MISSING
    baseline_limit: Optional[int] = checked(MISSING, positive)
    calibration_fraction: float = checked(MISSING, open_fraction)
    encoder_checkpoint: Optional[str] = MISSING
    pooling: str = checked(MISSING, one_of(*POOLINGS))
    max_length: int = checked(MISSING, positive)
    batch_size: int = checked(MISSING, positive)
    # -- monitor
    baseline: Optional[str] = MISSING
    capture: Optional[str] = MISSING
    threshold: Any = checked(MISSING, auto_or_number)  # auto (calibrated to fpr) or a fixed number
    fpr: float = checked(MISSING, open_fraction)
    alpha: float = checked(MISSING, open_fraction)
    window: str = checked("records", one_of("records", "hour"))
    window_size: Optional[int] = checked(MISSING, positive)
    n_permutations: int = checked(MISSING, positive)
    max_reference: Optional[int] = checked(MISSING, positive)
    classifier_folds: int = checked(MISSING, positive)
    save_embeddings: bool = MISSING
    endpoint_name: Optional[str] = MISSING
    monitoring_schedule_name: Optional[str] = MISSING


class DriftTask(Task):
    config_class = DriftConfig
    model_kinds = ("transformer",)
    lightning_modes: tuple[str, ...] = ()

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self._encoder: tuple[Any, Any, str] | None = None  # (model, tokenizer, cache key)

    def extra_modes(self) -> dict[str, Mode]:
        return {"baseline": self.run_baseline, "monitor": self.run_monitor, "report": self.run_report,
                **super().extra_modes()}

    # -- validation: what spans keys or needs the filesystem (types and ranges are DriftConfig's) -------
    def check(self) -> None:
        from sagelab.tasks.drift.sources import check_source

        t, mode = self.cfg.task, str(self.cfg.mode)
        if 1.0 / (int(t.n_permutations) + 1) >= float(t.alpha):
            raise ConfigError("task.n_permutations", f"{t.n_permutations} permutations cannot give a p-value "
                              f"below task.alpha={t.alpha}: use at least {int(1 / float(t.alpha))}.")
        if mode in ("baseline", "report"):
            if not t.get("baseline_source"):
                raise ConfigError("task.baseline_source", "is required for mode=baseline: a text file, capture "
                                  "folder or task:<name>.")
            check_source("task.baseline_source", str(t.baseline_source))
            ckpt = t.get("encoder_checkpoint")
            if ckpt and not Path(str(ckpt)).exists() and not looks_like_run_id(str(ckpt)):
                raise ConfigError("task.encoder_checkpoint", f"'{ckpt}' is neither a file/folder nor an MLflow run id.")
        if t.window == "hour" and t.get("window_size"):
            raise ConfigError("task.window_size", "windows are hours under task.window=hour; leave window_size null.")
        if mode in ("monitor", "report", "diagnose"):
            if not t.get("capture"):
                raise ConfigError("task.capture", "is required for mode=monitor: a capture .jsonl file or folder "
                                  "(or a .tsv/.csv/.txt of texts).")
            check_source("task.capture", str(t.capture))
        if mode in ("monitor", "diagnose") and t.get("baseline"):
            ref = str(t.baseline)
            if not Path(ref).is_dir() and not looks_like_run_id(ref):
                raise ConfigError("task.baseline", f"'{ref}' is neither a baseline folder nor an MLflow run id.")

    # -- the encoder (loaded once per command: mode=report embeds baseline and capture with it) ---------
    def encoder(self, model_cfg: Any, checkpoint: str | None,
                config_key: str = "task.encoder_checkpoint") -> tuple[Any, Any]:
        """``config_key`` is what a refused checkpoint is blamed on: the key, or the baseline that named it."""
        from sagelab.tasks.drift.embedding import load_encoder

        key = json.dumps([OmegaConf.to_container(model_cfg, resolve=True), checkpoint], sort_keys=True, default=str)
        if self._encoder is None or self._encoder[2] != key:
            path = None  # a run id fetches that training run's final.ckpt
            if checkpoint:
                path = resolve_artifact(config_key, checkpoint, str(self.cfg.logger.tracking_uri),
                                        CHECKPOINT_ARTIFACTS)
            model, tokenizer = load_encoder(model_cfg, str(path) if path else None, config_key)
            self._encoder = (model, tokenizer, key)
        return self._encoder[0], self._encoder[1]

    def embed(
        self, texts: list[str], model_cfg: Any, checkpoint: str | None, pooling: str, max_length: int
    ) -> tuple[Any, float]:
        """Embeddings of ``texts`` and the throughput in sentences/s."""
        from sagelab.tasks.drift.embedding import embed_texts

        model, tokenizer = self.encoder(model_cfg, checkpoint)
        start = time.perf_counter()
        emb = embed_texts(model, tokenizer, texts, pooling, int(self.cfg.task.batch_size), max_length)
        return emb, len(texts) / max(time.perf_counter() - start, 1e-9)

    # -- the modes ------------------------------------------------------------------------------------
    def run_baseline(self, context: TaskContext) -> dict[str, Any]:
        from sagelab.tasks.drift.baseline import build_baseline

        self.baseline = build_baseline(context, self.embed)
        return dict(context.tracker.metrics)

    def run_monitor(self, context: TaskContext, baseline: Baseline | None = None) -> dict[str, Any]:
        from sagelab.tasks.drift.reports import write_monitoring_reports

        baseline, capture, emb, rate = self.embedded_capture(context, baseline)
        return write_monitoring_reports(context.cfg, context, baseline, capture, emb, rate)

    def embedded_capture(self, context: TaskContext,
                         baseline: Baseline | None = None) -> tuple[Baseline, Any, Any, float]:
        """The baseline (given, ``task.baseline`` or the newest baseline run) and ``task.capture`` embedded with the
        baseline's own model and pooling: (baseline, capture, embeddings, sentences/s)."""
        from sagelab.tasks.drift.baseline import Baseline, latest_baseline_run, resolve_baseline
        from sagelab.tasks.drift.sources import read_source

        cfg, t = context.cfg, context.cfg.task
        if baseline is None:
            ref = str(t.baseline) if t.get("baseline") else latest_baseline_run(cfg)
            baseline = Baseline.load(resolve_baseline(ref, str(cfg.logger.tracking_uri)))
            baseline.meta.setdefault("ref", ref)
        meta = baseline.meta
        if meta["model"].get("name_or_path") != cfg.model.get("name_or_path"):
            print(f"monitor: embedding with the baseline's model {meta['model'].get('name')} "
                  f"({meta['model'].get('name_or_path')}), not model={cfg.model.get('name')}")
        capture = read_source(str(t.capture), str(t.text_column))
        model_cfg, ckpt = OmegaConf.create(meta["model"]), meta.get("encoder_checkpoint")
        self.encoder(model_cfg, ckpt, f"task.baseline ({meta.get('ref')}: baseline.json encoder_checkpoint)")
        emb, rate = self.embed(capture.texts, model_cfg, ckpt, str(meta["pooling"]), int(meta["max_length"]))
        return baseline, capture, emb, rate

    def diagnose_inputs(self, context: TaskContext) -> DiagnoseInputs:
        """The domain classifier as a binary classifier: baseline reference (0) against the whole capture (1),
        out-of-fold probabilities -- how separable the captured traffic is, with thresholds and bands."""
        from sagelab.tasks.drift.diagnose import diagnose_inputs

        return diagnose_inputs(self, context)

    def run_report(self, context: TaskContext) -> dict[str, Any]:
        """Baseline, then monitor against it, in one MLflow run."""
        from sagelab.tasks.drift.baseline import build_baseline

        baseline = build_baseline(context, self.embed)
        baseline.meta["ref"] = f"run {context.run_id}"
        return self.run_monitor(context, baseline)
