"""The HTTP face of an endpoint: SageMaker's two routes on Starlette.

* ``GET /ping`` -- 200 once the model is loaded (SageMaker's health check);
* ``POST /invocations`` -- a JSON body (one input, a list, or ``{"inputs": ...}``; see
  :meth:`sagelab.inference.Handler.parse_request`) answered with a JSON list, one answer per input, in order.

Bad requests never reach the model and never stop the server: a body over ``max_payload_bytes`` is 413, a
body that is not UTF-8 JSON or holds an input the task cannot answer is 400, each with the reason as
``{"error": ...}``. Answered requests are captured (:mod:`sagelab.serving.capture`) before the response is sent.
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sagelab.serving.batcher import DynamicBatcher
from sagelab.serving.capture import CaptureWriter, parse_inference_time

if TYPE_CHECKING:
    from sagelab.inference import Handler

#: the request header that dates a captured request when ``serve.capture.trust_time_header`` is on
TIME_HEADER = "x-sagelab-inference-time"


class Rejected(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


@dataclass
class Endpoint:
    handler: Handler
    batcher: DynamicBatcher
    max_payload_bytes: int
    capture: CaptureWriter | None = None
    trust_time_header: bool = False
    counts: dict[str, int] = field(default_factory=lambda: {"requests": 0, "rejected": 0, "failed": 0})
    in_flight: int = 0  # accepted requests not yet answered (GET /ping shows it)

    async def read_body(self, request: Request) -> Any:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_payload_bytes:
            raise Rejected(413, f"the body is {int(declared)} bytes; this endpoint takes at most "
                                f"{self.max_payload_bytes} (serve.max_payload_mb)")
        raw = bytearray()
        async for chunk in request.stream():  # a chunked body has no length to check up front
            raw += chunk
            if len(raw) > self.max_payload_bytes:
                raise Rejected(413, f"the body exceeds {self.max_payload_bytes} bytes (serve.max_payload_mb)")
        try:
            return bytes(raw), json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as err:
            raise Rejected(400, f"the body is not UTF-8 ({err.reason} at byte {err.start})") from None
        except json.JSONDecodeError as err:
            raise Rejected(400, f"the body is not JSON ({err.msg} at line {err.lineno} column {err.colno})") from None
        except RecursionError:
            raise Rejected(400, "the body is nested too deeply to read") from None

    def inference_time(self, request: Request) -> Any:
        value = request.headers.get(TIME_HEADER)
        if not (self.trust_time_header and value):
            return None
        try:
            return parse_inference_time(value)
        except ValueError:
            raise Rejected(400, f"header {TIME_HEADER} is not an ISO-8601 time: {value!r}") from None

    async def invocations(self, request: Request) -> Response:
        try:
            raw, body = await self.read_body(request)
            when = self.inference_time(request)
            records, problems = self.handler.parse_request(body)
            if problems:
                raise Rejected(400, "; ".join(problems[:10]) + (f" (and {len(problems) - 10} more)"
                                                                if len(problems) > 10 else ""))
        except Rejected as err:
            self.counts["rejected"] += 1
            return JSONResponse({"error": err.reason}, status_code=err.status)
        self.in_flight += 1
        try:
            answers = await self.batcher.answer(records)
        except Exception as err:  # noqa: BLE001 -- one failed batch is a 500 for its requests, not a dead server
            self.counts["failed"] += 1
            return JSONResponse({"error": f"the model failed on this request: {type(err).__name__}: {err}"},
                                status_code=500)
        finally:
            self.in_flight -= 1
        payload = json.dumps(answers)
        if self.capture is not None and self.capture.sampled():
            self.capture.write(raw.decode("utf-8"), payload, when)
        self.counts["requests"] += 1
        return Response(payload, media_type="application/json")

    async def ping(self, request: Request) -> Response:
        return JSONResponse({"status": "healthy", "in_flight": self.in_flight})


def build_app(endpoint: Endpoint) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        endpoint.batcher.start()
        try:
            yield
        finally:  # uvicorn has answered every in-flight request by now
            await endpoint.batcher.stop()
            if endpoint.capture is not None:
                endpoint.capture.close()

    return Starlette(routes=[Route("/ping", endpoint.ping, methods=["GET"]),
                             Route("/invocations", endpoint.invocations, methods=["POST"])],
                     lifespan=lifespan)
