"""The GraphBolt stand-in: DGL 2.1 imports and works on this torch only through sagelab.tasks.graph.dgl_shim."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_fresh_interpreter_imports_dgl_through_the_shim() -> None:
    code = (
        "import sys\n"
        "assert 'dgl' not in sys.modules\n"
        "from sagelab.tasks.graph.dgl_shim import import_dgl\n"
        "dgl = import_dgl()\n"
        "assert dgl.graphbolt is sys.modules['dgl.graphbolt']\n"
        "print(dgl.__version__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("2.")


def test_standin_fails_loudly_and_dgl_still_computes() -> None:
    import torch

    from sagelab.tasks.graph.dgl_shim import import_dgl

    dgl = import_dgl()
    assert import_dgl() is dgl  # idempotent
    with pytest.raises(ImportError, match="stand-in"):
        dgl.graphbolt.ItemSampler  # noqa: B018 -- attribute access is the behaviour under test
    graph = dgl.graph((torch.tensor([0, 1, 2]), torch.tensor([1, 2, 0])))
    conv = dgl.nn.SAGEConv(4, 3, "mean")
    out = conv(graph, torch.ones(3, 4))
    assert out.shape == (3, 3)
    # every node has exactly one in-neighbour with the same features: all outputs are equal
    assert torch.allclose(out[0], out[1]) and torch.allclose(out[1], out[2])
