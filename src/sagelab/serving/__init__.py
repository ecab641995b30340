"""``mode=serve``: a task's handler behind HTTP, with dynamic batching and data capture."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sagelab.context import TaskContext
    from sagelab.inference import Handler


def serve(context: TaskContext, handler: Handler) -> dict[str, Any]:
    from sagelab.serving.server import run_server

    return run_server(context, handler)
