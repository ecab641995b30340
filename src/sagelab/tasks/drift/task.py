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

No Lightning training happens, so ``lightning_modes`` is empty.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from omegaconf import OmegaConf

from sagelab.config import ConfigError, check_choice, check_positive
from sagelab.tasks.base import Task

if TYPE_CHECKING:
    from sagelab.tasks.drift.baseline import Baseline
    from sagelab.runner import Runner

POOLINGS = ("second_to_last_mean", "last_mean", "cls")  # = sagelab.tasks.drift.embedding.POOLINGS (no torch here)


class DriftTask(Task):
    lightning_modes: tuple[str, ...] = ()

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self._encoder: tuple[Any, Any, str] | None = None  # (model, tokenizer, cache key)

    def extra_modes(self) -> dict[str, Callable[[Runner], dict[str, Any]]]:
        return {"baseline": self.run_baseline, "monitor": self.run_monitor, "report": self.run_report}

    # -- validation ---------------------------------------------------------------------
    def check(self) -> None:
        from sagelab.tasks.drift.baseline import looks_like_run_id
        from sagelab.tasks.drift.sources import check_source

        t, mode = self.cfg.task, str(self.cfg.mode)
        check_choice(self.cfg, "task.pooling", POOLINGS)
        check_positive(self.cfg, ["task.max_length", "task.batch_size", "task.n_permutations",
                                  "task.classifier_folds", "task.window_size", "task.baseline_limit",
                                  "task.max_reference"])
        for key in ("fpr", "alpha", "calibration_fraction"):
            value = t.get(key)
            if not isinstance(value, (int, float)) or not 0 < value < 1:
                raise ConfigError(f"task.{key}", f"must be a number between 0 and 1 (exclusive), got {value!r}.")
        threshold = t.get("threshold")
        if not (str(threshold).lower() == "auto" or isinstance(threshold, (int, float))):
            raise ConfigError("task.threshold", f"is {threshold!r}; use auto (calibrated to task.fpr) or a number.")
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
        if mode in ("monitor", "report"):
            if not t.get("capture"):
                raise ConfigError("task.capture", "is required for mode=monitor: a capture .jsonl file or folder "
                                  "(or a .tsv/.csv/.txt of texts).")
            check_source("task.capture", str(t.capture))
        if mode == "monitor" and t.get("baseline"):
            ref = str(t.baseline)
            if not Path(ref).is_dir() and not looks_like_run_id(ref):
                raise ConfigError("task.baseline", f"'{ref}' is neither a baseline folder nor an MLflow run id.")

    # -- the encoder --------------------------------------------------------------------
    def _checkpoint_path(self, ref: str | None) -> str | None:
        """A local file/folder for ``task.encoder_checkpoint`` (a run id fetches its ``model/final.ckpt``)."""
        if not ref or Path(ref).exists():
            return ref or None
        from sagelab import tracking

        return str(tracking.download_artifact(str(self.cfg.logger.tracking_uri), ref, "model/final.ckpt"))

    def encoder(self, model_cfg: Any, checkpoint: str | None) -> tuple[Any, Any]:
        from sagelab.tasks.drift.embedding import load_encoder

        key = json.dumps([OmegaConf.to_container(model_cfg, resolve=True), checkpoint], sort_keys=True, default=str)
        if self._encoder is None or self._encoder[2] != key:
            model, tokenizer = load_encoder(model_cfg, self._checkpoint_path(checkpoint))
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

    # -- mode=baseline --------------------------------------------------------------------
    def run_baseline(self, runner: Runner) -> dict[str, Any]:
        self.baseline = self._build_baseline(runner)
        return dict(runner.metrics)

    def _build_baseline(self, runner: Runner) -> Baseline:
        import numpy as np

        from sagelab.tasks.drift.baseline import ARTIFACT_DIR, Baseline, summary
        from sagelab.tasks.drift.calibration import calibrate_threshold
        from sagelab.tasks.drift.scoring import cosine_scores, unit_mean
        from sagelab.tasks.drift.sources import read_source

        t = self.cfg.task
        data = read_source(str(t.baseline_source), str(t.text_column))
        texts = list(dict.fromkeys(data.texts))  # exact duplicates would leak into the held-out part
        duplicates = len(data.texts) - len(texts)
        rng = np.random.default_rng(int(self.cfg.seed))
        order = rng.permutation(len(texts))
        if t.get("baseline_limit"):
            order = order[: int(t.baseline_limit)]
        n_cal = int(round(len(order) * float(t.calibration_fraction)))
        if len(order) - n_cal < 2 or n_cal < 1:
            raise ConfigError("task.baseline_source", f"{len(order)} distinct texts are too few to split into a "
                              f"reference and a calibration part (task.calibration_fraction={t.calibration_fraction}).")
        cal_texts = [texts[i] for i in order[:n_cal]]
        ref_texts = [texts[i] for i in order[n_cal:]]

        ckpt = str(t.encoder_checkpoint) if t.get("encoder_checkpoint") else None
        emb, rate = self.embed(ref_texts + cal_texts, self.cfg.model, ckpt, str(t.pooling), int(t.max_length))
        ref_emb, cal_emb = emb[: len(ref_texts)], emb[len(ref_texts) :]
        cal_scores = cosine_scores(cal_emb, unit_mean(ref_emb))
        meta = {
            "model": OmegaConf.to_container(self.cfg.model, resolve=True),
            "encoder_checkpoint": ckpt,
            "pooling": str(t.pooling),
            "max_length": int(t.max_length),
            "source": str(t.baseline_source),
            "text_column": str(t.text_column),
            "reference_records": len(ref_texts),
            "calibration_records": len(cal_texts),
            "duplicates_dropped": duplicates,
            "bad_lines": [b.as_dict() for b in data.bad_lines],
            "calibration_scores": summary(cal_scores),
            "seed": int(self.cfg.seed),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        baseline = Baseline(ref_emb, cal_scores, meta)
        folder = baseline.save(runner.output_dir / ARTIFACT_DIR)
        with open(folder / "texts.jsonl", "w") as out:
            for role, group in (("reference", ref_texts), ("calibration", cal_texts)):
                for text in group:
                    out.write(json.dumps({"role": role, "text": text}) + "\n")
        runner.log_artifact(folder, ARTIFACT_DIR)
        auto = calibrate_threshold(cal_scores, float(t.fpr))
        metrics = {
            "baseline/reference_records": len(ref_texts),
            "baseline/calibration_records": len(cal_texts),
            "baseline/duplicates_dropped": duplicates,
            "baseline/bad_lines": len(data.bad_lines),
            "baseline/threshold_auto": auto.value,
            "baseline/score_median": float(np.median(cal_scores)),
            "baseline/embed_sentences_per_s": rate,
        }
        runner.log_metrics({k: v for k, v in metrics.items() if np.isfinite(v)})
        if auto.note:
            print(f"baseline: warning: {auto.note}")
        print(f"baseline: {len(ref_texts)} reference + {len(cal_texts)} calibration texts from {t.baseline_source}; "
              f"threshold at fpr {t.fpr}: {auto.value:.4f}; saved to {folder} (MLflow run {runner.run_id})")
        return baseline

    # -- mode=monitor ---------------------------------------------------------------------
    def run_monitor(self, runner: Runner, baseline: Baseline | None = None) -> dict[str, Any]:
        from sagelab.tasks.drift.baseline import Baseline, resolve_baseline
        from sagelab.tasks.drift.sources import read_source

        t = self.cfg.task
        if baseline is None:
            ref = str(t.baseline) if t.get("baseline") else self._latest_baseline_run()
            baseline = Baseline.load(resolve_baseline(ref, str(self.cfg.logger.tracking_uri)))
            baseline.meta.setdefault("ref", ref)
        meta = baseline.meta
        if meta["model"].get("name_or_path") != self.cfg.model.get("name_or_path"):
            print(f"monitor: embedding with the baseline's model {meta['model'].get('name')} "
                  f"({meta['model'].get('name_or_path')}), not model={self.cfg.model.get('name')}")
        capture = read_source(str(t.capture), str(t.text_column))
        emb, rate = self.embed(capture.texts, OmegaConf.create(meta["model"]), meta.get("encoder_checkpoint"),
                               str(meta["pooling"]), int(meta["max_length"]))
        from sagelab.tasks.drift.reports import write_monitoring_reports

        return write_monitoring_reports(self.cfg, runner, baseline, capture, emb, rate)

    def _latest_baseline_run(self) -> str:
        """The newest finished baseline (or report) run of this experiment."""
        import mlflow

        mlflow.set_tracking_uri(str(self.cfg.logger.tracking_uri))
        experiment = mlflow.get_experiment_by_name(str(self.cfg.logger.experiment_name))
        runs = [] if experiment is None else [
            run
            for mode in ("baseline", "report")  # MLflow's filter has no IN for tags
            for run in mlflow.search_runs(
                [experiment.experiment_id],
                filter_string=f"tags.mode = '{mode}' AND attributes.status = 'FINISHED'",
                order_by=["attributes.start_time DESC"], max_results=1, output_format="list",
            )
        ]
        runs.sort(key=lambda run: run.info.start_time, reverse=True)
        if not runs:
            raise ConfigError("task.baseline", f"is not set and experiment '{self.cfg.logger.experiment_name}' has "
                              "no finished baseline run: run mode=baseline first or pass a run id or folder.")
        print(f"monitor: using the latest baseline run {runs[0].info.run_id}")
        return runs[0].info.run_id

    # -- mode=report ----------------------------------------------------------------------
    def run_report(self, runner: Runner) -> dict[str, Any]:
        """Baseline, then monitor against it, in one MLflow run."""
        baseline = self._build_baseline(runner)
        baseline.meta["ref"] = f"run {runner.run_id}"
        return self.run_monitor(runner, baseline)
