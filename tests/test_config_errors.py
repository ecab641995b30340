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
