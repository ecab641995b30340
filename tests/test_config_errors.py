"""User mistakes stop at once with one paragraph that names the key, never a traceback."""

import pytest


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["task=nope"], ["task: there is no option 'nope'", "glue_cola, glue_mrpc, glue_sst2"]),
        (["-m", "model=minilm,nope"], ["model: there is no option 'nope'", "bert_tiny"]),
        (["optim.lr=-1"], ["optim.lr", "greater than zero", "-1"]),
        (["optim.warmup_ratio=2"], ["optim.warmup_ratio", "0..1"]),
        (["trainer.precision=fp8"], ["trainer.precision", "bf16-mixed"]),
        (["mode=dance"], ["mode", "dance", "train, evaluate, predict"]),
        (["task.source=/nonexistent/glue"], ["task.source", "/nonexistent/glue", "does not exist"]),
        (["task.metrics=[accuracy,bleu]"], ["task.metrics", "bleu"]),
    ],
)
def test_bad_config_names_the_problem(run_cli, overrides, expected):
    result = run_cli(*overrides, tiny=False, timeout=120)
    assert result.returncode != 0
    for text in expected:
        assert text in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_missing_hardware_is_a_clear_error(run_cli):
    result = run_cli("instance=ml_p3_2xlarge", timeout=300)
    assert result.returncode == 2
    assert "ml_p3_2xlarge" in result.stderr and "GPU" in result.stderr
    assert "instance=local_cpu2" in result.stderr
    assert "Traceback" not in result.stderr


PROBE = """
import runpy, sys
sys.argv = ["run.py", *sys.argv[1:]]
try:
    runpy.run_path("run.py", run_name="__main__")
except SystemExit as exit:
    heavy = sorted(m for m in ("torch", "lightning", "transformers", "dgl") if m in sys.modules)
    print("EXIT", exit.code, "HEAVY", ",".join(heavy) or "none")
"""


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["seed=abc"], "seed: wrong type: 'abc' is not a whole number."),
        (["optim.batch_size=2.5"], "optim.batch_size: wrong type: 2.5 is not a whole number."),
        (["trainer.max_steps=abc"], "trainer.max_steps: wrong type: 'abc' is not a whole number."),
        (["optim.lr=nan"], "optim.lr: is nan; give a number."),
        (["instance.threads=0"], "instance.threads: is 0; use auto"),
        (["trainer.foo=1"], "trainer.foo: no such key"),
        (["task=qa", "task.doc_stride=x"], "task.doc_stride: wrong type: 'x' is not a whole number."),
        (["task=drift", "task.foo=1"], "task.foo: no such key in task drift"),
        (["mode=dance"], "mode: is 'dance'"),  # caught after composing, still before torch
    ],
)
def test_the_schema_refuses_wrong_types_before_anything_heavy_is_imported(overrides, expected):
    import subprocess
    import sys

    from conftest import ROOT

    result = subprocess.run([sys.executable, "-c", PROBE, *overrides], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert f"sagelab: bad config: {expected}" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert "EXIT 2 HEAVY none" in result.stdout, result.stdout
