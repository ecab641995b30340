"""Import DGL 2.1 on a torch it was not built for.

``import dgl`` imports ``dgl.graphbolt``, whose native library exists only for torch 2.0-2.2 and
which needs ``torchdata``; on torch 2.13 that import fails and takes all of DGL with it. sagelab
uses none of GraphBolt (graphs, message-passing layers and the classic samplers live elsewhere), so
before the first ``import dgl`` we register an empty stand-in module under ``dgl.graphbolt``. Any
attribute read from the stand-in raises an ImportError that says why, instead of an obscure
``AttributeError`` deep inside DGL.

Everything in sagelab imports DGL through :func:`import_dgl`; nothing else touches ``sys.modules``. It also
fixes the importing thread's random stream (:func:`claim_first_random_stream`).
"""

from __future__ import annotations

import os
import sys
import types
from contextlib import contextmanager
from typing import Any, Iterator

STANDIN_NAME = "dgl.graphbolt"


class _GraphBoltStandIn(types.ModuleType):
    """Empty ``dgl.graphbolt``: importable, but any real use fails loudly."""

    __sagelab_standin__ = True

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        raise ImportError(
            f"dgl.graphbolt.{attr} is unavailable: sagelab registers a stand-in for dgl.graphbolt "
            "because DGL 2.1's GraphBolt has no build for this torch version. Use the classic "
            "dgl.dataloading samplers instead."
        )


def install_standin() -> None:
    """Register the stand-in unless a real (or our) ``dgl.graphbolt`` is already imported."""
    if STANDIN_NAME not in sys.modules:
        sys.modules[STANDIN_NAME] = _GraphBoltStandIn(STANDIN_NAME)


def import_dgl() -> Any:
    """Return the ``dgl`` module, importing it behind the GraphBolt stand-in on first use."""
    if "dgl" in sys.modules and hasattr(sys.modules["dgl"], "graph"):
        return sys.modules["dgl"]
    os.environ.setdefault("DGLBACKEND", "pytorch")
    install_standin()
    import dgl  # noqa: PLC0415 -- deliberately lazy and behind the stand-in

    # ``from .. import graphbolt`` inside DGL found the stand-in; make ``dgl.graphbolt`` match it.
    if not hasattr(dgl, "graphbolt") or dgl.graphbolt is not sys.modules[STANDIN_NAME]:
        dgl.graphbolt = sys.modules[STANDIN_NAME]
    claim_first_random_stream(dgl)
    return dgl


def claim_first_random_stream(dgl: Any) -> None:
    """Give the importing thread (the one that samples) DGL's random stream 0, whatever threads seed DGL later.

    DGL seeds each thread's generator with ``(seed, stream)``, where ``stream`` numbers threads in the order they
    first reach ``dgl.seed``. When the first ``dgl.seed`` ran on two OpenMP threads, the main thread's stream was
    0 or 1 by scheduling: under load, one seed sampled other neighbours in some processes. Seeding once here, on
    this thread alone, fixes its stream. The seed is random, so DGL stays unseeded until someone seeds it.
    """
    with one_thread():
        dgl.seed(int.from_bytes(os.urandom(4), "little") >> 1)  # DGL takes a signed 32-bit seed


@contextmanager
def one_thread() -> Iterator[None]:
    """DGL's OpenMP parallelism limited to the calling thread, then restored. (DGL links its own OpenMP runtime,
    so torch's thread setting does not reach it.)"""
    utils = import_dgl().utils
    threads = utils.get_num_threads()
    utils.set_num_threads(1)
    try:
        yield
    finally:
        utils.set_num_threads(threads)
