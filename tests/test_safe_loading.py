"""Checkpoints a user or an MLflow store hands in are unpickled as tensors and plain data only.

The hostile checkpoint's pickle calls ``pathlib.Path.touch`` on a marker file: loading it the unsafe way
creates the file (the control), every sagelab way refuses it with one line and exit 2 and the file never appears.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from sagelab.config import ConfigError

from conftest import compose_config, private_store


class Touch:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def hostile_checkpoint(tmp: Path, name: str = "hostile.ckpt") -> tuple[Path, Path]:
    """(a Lightning-shaped checkpoint whose unpickling creates a file, that file's path)."""
    import torch

    marker = tmp / f"{name}.pwned"
    path = tmp / name
    torch.save({"state_dict": {"w": torch.zeros(2)}, "hyper_parameters": Touch(marker)}, path)
    return path, marker


def assert_refused(proc: subprocess.CompletedProcess, key: str, marker: Path) -> None:
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith(f"sagelab: bad config: {key}"), proc.stderr[-3000:]
    assert "is not a checkpoint sagelab can load safely: its pickle calls" in line
    assert "Traceback" not in proc.stderr
    assert not marker.exists(), "the checkpoint's pickle ran"


def test_the_payload_is_real(tmp_path):
    import torch

    path, marker = hostile_checkpoint(tmp_path)
    torch.load(path, weights_only=False)  # what drift did before: the pickle runs
    assert marker.exists()


def test_checkpoint_load_refuses_it(run_cli, tmp_path):
    path, marker = hostile_checkpoint(tmp_path)
    assert_refused(run_cli("task=glue_cola", "mode=evaluate", f"checkpoint.load={path}"), "checkpoint.load", marker)


def test_checkpoint_resume_refuses_it(run_cli, tmp_path):
    path, marker = hostile_checkpoint(tmp_path)
    assert_refused(run_cli("task=glue_cola", f"checkpoint.resume={path}"), "checkpoint.resume", marker)


DRIFT = ["task=drift", "model=bert_tiny", "task.n_permutations=99", "task.batch_size=8", "task.max_length=32"]


def texts_file(tmp: Path) -> Path:
    path = tmp / "texts.txt"
    path.write_text("".join(f"sentence number {i} about books\n" for i in range(12)))
    return path


def test_encoder_checkpoint_refuses_it(run_cli, tmp_path):
    path, marker = hostile_checkpoint(tmp_path)
    proc = run_cli(*DRIFT, *private_store(tmp_path), "mode=baseline", f"task.baseline_source={texts_file(tmp_path)}",
                   f"task.encoder_checkpoint={path}", tiny=False)
    assert_refused(proc, "task.encoder_checkpoint", marker)


def test_a_baseline_naming_it_is_refused(run_cli, tmp_path):
    """``mode=monitor`` embeds with the checkpoint the baseline's baseline.json names: the same rule holds."""
    path, marker = hostile_checkpoint(tmp_path)
    folder = tmp_path / "baseline"
    folder.mkdir()
    for name, array in {"embeddings.npy": np.ones((4, 64), np.float32), "unit_mean.npy": np.ones(64),
                        "calibration_scores.npy": np.full(2, 0.5)}.items():
        np.save(folder / name, array)
    model = OmegaConf.to_container(compose_config("model=bert_tiny", tiny=False).model, resolve=True)
    (folder / "baseline.json").write_text(json.dumps(
        {"model": model, "encoder_checkpoint": str(path), "pooling": "last_mean", "max_length": 32}))
    proc = run_cli(*DRIFT, *private_store(tmp_path), "mode=monitor", f"task.baseline={folder}",
                   f"task.capture={texts_file(tmp_path)}", tiny=False)
    assert_refused(proc, "task.baseline", marker)
    assert "baseline.json encoder_checkpoint" in proc.stderr


@pytest.mark.parametrize(("content", "says"), [(b"", "the file is empty or cut short"),
                                               (b"PK\x03\x04 cut short", "RuntimeError")])
def test_empty_or_truncated_checkpoint_is_a_config_error(tmp_path, content, says):
    from sagelab.safe_io import load_checkpoint

    path = tmp_path / "bad.ckpt"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=says) as err:
        load_checkpoint(path, "checkpoint.load")
    assert err.value.key == "checkpoint.load"


def test_a_plain_checkpoint_still_loads(tmp_path):
    import torch

    from sagelab.safe_io import load_checkpoint

    torch.save({"state_dict": {"w": torch.arange(3)}, "epoch": 2}, tmp_path / "ok.ckpt")
    blob = load_checkpoint(tmp_path / "ok.ckpt", "checkpoint.load")
    assert blob["epoch"] == 2 and blob["state_dict"]["w"].tolist() == [0, 1, 2]
