"""The sagelab task handler behind LitServe, for ``serve_throughput.py``'s comparison (one request = one input).

    python benchmarks/litserve_engine.py <port> <checkpoint> <max_batch_size> <batch_delay_ms> <precision>

Module-level classes: LitServe starts its inference worker with ``spawn``, which pickles the API by name.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import litserve as ls

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def compose(*overrides: str) -> Any:
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    import sagelab.schema  # noqa: F401

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = hydra_compose("config", overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
        cfg.output_dir = os.getcwd()
    return cfg


class HandlerAPI(ls.LitAPI):
    def __init__(self, checkpoint: str, precision: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.checkpoint, self.precision = checkpoint, precision

    def setup(self, device: str) -> None:
        import torch
        from hydra.utils import get_class

        from sagelab.runner import Runner

        torch.set_num_threads(len(os.sched_getaffinity(0)))
        cfg = compose(f"checkpoint.load={self.checkpoint}", "mode=predict", "trainer.enable_progress_bar=false")
        task = get_class(str(cfg.task._target_))(cfg)
        self.handler, self.module = task.handler(), Runner(cfg, task).load_module().eval()
        self.sub_batch = int(cfg.serve.sub_batch_size or cfg.serve.max_batch_size)  # as sagelab's server answers

    def decode_request(self, request):  # unannotated: LitServe then reads the body as JSON
        records, problems = self.handler.parse_request(request)
        if problems:
            raise ls.HTTPException(400, "; ".join(problems)) if hasattr(ls, "HTTPException") else ValueError(problems)
        return records[0]

    def batch(self, inputs: list) -> list:
        return inputs

    def predict(self, records: list) -> list:
        from sagelab.hardware import inference, resolve_precision

        with inference(resolve_precision(self.precision, "cpu").value):
            return self.handler.answer_sorted(self.module, records, self.sub_batch)

    def unbatch(self, output: list) -> list:
        return output

    def encode_response(self, output: dict) -> list:
        return [output]


if __name__ == "__main__":
    port, checkpoint, batch, delay_ms = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    api = HandlerAPI(checkpoint, sys.argv[5], max_batch_size=batch, batch_timeout=delay_ms / 1000, api_path="/invocations")
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1, healthcheck_path="/ping")
    server.run(host="127.0.0.1", port=port, generate_client_file=False, log_level="warning")
