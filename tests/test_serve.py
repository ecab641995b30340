"""``mode=serve`` end to end: the real server in a subprocess on a free loopback port, spoken to over HTTP.

Nothing here waits on timing: in-flight requests are held in the batcher (a batch larger than the load, a
delay longer than the test) and the test watches ``GET /ping``'s ``in_flight`` count before it signals.
"""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest

from sagelab.readers.capture import read_capture

from conftest import ROOT, cli_env, compose_config, dispatch_cfg, tiny_overrides

SENTENCES = ["The cat sat on the mat.", "Mat the on sat cat the.", "Colourless green ideas sleep furiously.",
             "She gave the book to him.", "Him the book gave she to."]
DEADLINE_S = 180  # bounds every wait; none decides an outcome


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One tiny CoLA fine-tune; its final checkpoint is what every endpoint here serves."""
    tmp = tmp_path_factory.mktemp("serve")
    cfg = compose_config("task=glue_cola", tmp=tmp)
    dispatch_cfg(cfg)
    return Path(cfg.checkpoint.dir) / "final.ckpt"


def post(url: str, body: bytes | str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = body.encode() if isinstance(body, str) else body
    request = urllib.request.Request(f"{url}/invocations", data=data, method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=DEADLINE_S) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def ping(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/ping", timeout=DEADLINE_S) as response:
        return json.loads(response.read())


@contextmanager
def endpoint(tmp: Path, checkpoint: Path, *overrides: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """``python run.py mode=serve serve.port=0 ...``; yields its URL once /ping answers; always stopped after."""
    args = [sys.executable, str(ROOT / "run.py"), *tiny_overrides(tmp), "task=glue_cola", "mode=serve",
            "serve.port=0", f"checkpoint.load={checkpoint}", *overrides]
    proc = subprocess.Popen(args, cwd=ROOT, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    lines: queue.Queue[str] = queue.Queue()
    log: list[str] = []
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        url, deadline = None, time.monotonic() + DEADLINE_S
        while url is None:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError("the server never said where it listens:\n" + "".join(log)) from None
            log.append(line)
            if match := re.search(r"serving \S+ on (http://[\d.]+:\d+)", line):
                url = match.group(1)
        while True:  # the socket is bound before the model loads: /ping answers once it is ready
            try:
                ping(url)
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline and proc.poll() is None, "".join(log)
                time.sleep(0.2)
        proc.log = log  # type: ignore[attr-defined]
        proc.lines = lines  # type: ignore[attr-defined]
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def rest_of_log(proc: subprocess.Popen) -> str:
    out = list(proc.log)  # type: ignore[attr-defined]
    while True:
        try:
            out.append(proc.lines.get(timeout=5))  # type: ignore[attr-defined]
        except queue.Empty:
            return "".join(out)


# -- the request shapes, without a server -------------------------------------------------------------------------
def test_request_shapes_become_records() -> None:
    from sagelab.inference import Handler, text_fields_parser

    single = Handler(text_fields_parser(["sentence"]), answer=None, fields=["sentence"])
    assert single.parse_request("a b")[0] == [{"sentence": "a b"}]
    assert single.parse_request(["a", "b"])[0] == [{"sentence": "a"}, {"sentence": "b"}]
    assert single.parse_request({"inputs": ["a", {"sentence": "b"}]})[0] == [{"sentence": "a"}, {"sentence": "b"}]
    assert single.parse_request([])[1] == ["the request has no inputs"]
    assert single.parse_request(["a", 3])[1] == ["input 1: not a JSON object or a string (int)"]

    pair = Handler(text_fields_parser(["sentence1", "sentence2"]), answer=None, fields=["sentence1", "sentence2"])
    one_pair = [{"sentence1": "p", "sentence2": "h"}]
    assert pair.parse_request(["p", "h"])[0] == one_pair
    assert pair.parse_request([["p", "h"], ["q", "i"]])[0][1] == {"sentence1": "q", "sentence2": "i"}
    assert [{k: r[k] for k in ("sentence1", "sentence2")} for r in
            pair.parse_request({"inputs": {"text": "p", "text_pair": "h"}})[0]] == one_pair
    assert "sentence2" in pair.parse_request({"inputs": {"sentence1": "p"}})[1][0]


# -- the real server ----------------------------------------------------------------------------------------------
def test_answers_match_mode_predict(trained: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"sentence": s}) + "\n" for s in SENTENCES))
    out = tmp_path / "predictions.jsonl"
    dispatch_cfg(compose_config("task=glue_cola", "mode=predict", f"predict.input={source}",
                                f"predict.output={out}", f"checkpoint.load={trained}", tmp=tmp_path / "predict"))
    predicted = [json.loads(line) for line in out.read_text().splitlines()]

    with endpoint(tmp_path, trained, "serve.max_batch_size=4") as (url, _):
        status, served = post(url, json.dumps(SENTENCES))
        status_one, one = post(url, json.dumps({"inputs": SENTENCES[2]}))
    assert status == status_one == 200
    assert [a["label"] for a in served] == [p["label"] for p in predicted]
    assert served[0].keys() == {"label", "probability"}
    for answer, expected in zip(served, predicted):
        assert answer["probability"] == pytest.approx(expected["probability"], abs=1e-5)
    assert one == [served[2]]


def test_bad_requests_get_the_reason_and_the_server_keeps_serving(trained: Path, tmp_path: Path) -> None:
    with endpoint(tmp_path, trained, "serve.max_payload_mb=0.01") as (url, _):
        status, body = post(url, '{"inputs": ')
        assert status == 400 and "not JSON" in body["error"]
        status, body = post(url, b'"\xff\xfe"')
        assert status == 400 and "not UTF-8" in body["error"]
        status, body = post(url, json.dumps([{"text": "wrong field"}, "fine"]))
        assert status == 400 and body["error"] == "input 0: field 'sentence' is missing, not text"
        status, body = post(url, json.dumps(["x" * 20_000]))  # 0.01 MB = 10,485 bytes
        assert status == 413 and "at most 10485" in body["error"]
        status, body = post(url, json.dumps(SENTENCES[:2]))
        assert status == 200 and len(body) == 2
        assert ping(url)["status"] == "healthy"


def test_sigterm_answers_in_flight_requests_flushes_capture_and_exits_0(trained: Path, tmp_path: Path) -> None:
    capture = tmp_path / "capture"
    held = len(SENTENCES)
    # a batch one larger than the load and a delay longer than the test: the requests wait until SIGTERM
    with endpoint(tmp_path, trained, "serve.capture.enabled=true", f"serve.capture.dir={capture}",
                  f"serve.max_batch_size={held + 1}", "serve.max_batch_delay_ms=600000") as (url, proc):
        answers: list[tuple[int, Any]] = []
        clients = [threading.Thread(target=lambda s=s: answers.append(post(url, json.dumps(s)))) for s in SENTENCES]
        for client in clients:
            client.start()
        deadline = time.monotonic() + DEADLINE_S
        while ping(url)["in_flight"] < held:
            assert time.monotonic() < deadline, "the requests never reached the server"
            time.sleep(0.05)
        assert answers == []  # all held in the batcher
        proc.send_signal(signal.SIGTERM)
        for client in clients:
            client.join(DEADLINE_S)
        assert proc.wait(timeout=DEADLINE_S) == 0, rest_of_log(proc)
    assert sorted(status for status, _ in answers) == [200] * held
    assert all(len(body) == 1 and body[0]["label"] in (0, 1) for _, body in answers)

    files = sorted(capture.rglob("*.jsonl"))
    assert files and all(re.fullmatch(r"glue_cola/AllTraffic/\d{4}/\d\d/\d\d/\d\d/\d\d-\d\d-\d{3}-[0-9a-f-]{36}\.jsonl",
                                      str(f.relative_to(capture))) for f in files)
    lines = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert len(lines) == held  # 100 % sampling: one captured record per answered request
    assert sorted(json.loads(line["captureData"]["endpointInput"]["data"]) for line in lines) == sorted(SENTENCES)
    assert {json.dumps(json.loads(line["captureData"]["endpointOutput"]["data"])) for line in lines} == \
        {json.dumps(body) for _, body in answers}
    assert sorted(read_capture(capture).texts) == sorted(SENTENCES)  # the monitor reads it as it is


def test_capture_samples_and_dates_requests_by_the_time_header(trained: Path, tmp_path: Path) -> None:
    capture = tmp_path / "capture"
    hours = {"2026-01-05T10:15:00Z": "2026/01/05/10", "2026-01-05T11:45:30Z": "2026/01/05/11"}
    with endpoint(tmp_path, trained, "serve.capture.enabled=true", f"serve.capture.dir={capture}",
                  "serve.capture.trust_time_header=true", "serve.capture.max_file_records=3") as (url, proc):
        for when in hours:
            for sentence in SENTENCES:
                assert post(url, json.dumps(sentence), {"X-Sagelab-Inference-Time": when})[0] == 200
        assert post(url, '"x"', {"X-Sagelab-Inference-Time": "yesterday"})[0] == 400
    folders = {str(f.parent.relative_to(capture / "glue_cola" / "AllTraffic")) for f in capture.rglob("*.jsonl")}
    assert folders == set(hours.values())
    per_hour = [sorted((capture / "glue_cola" / "AllTraffic" / h).glob("*.jsonl")) for h in hours.values()]
    assert [len(files) for files in per_hour] == [2, 2]  # 5 records, rotated at 3 lines
    records = read_capture(capture).records
    assert [r.inference_time for r in records] == [t for t in hours for _ in SENTENCES]


@pytest.mark.slow  # kept out of CI for time; `make test-slow` runs it
def test_two_workers_share_the_port_and_stop_cleanly(trained: Path, tmp_path: Path) -> None:
    with endpoint(tmp_path, trained, "serve.workers=2") as (url, proc):
        results = [post(url, json.dumps(SENTENCES[:2])) for _ in range(4)]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=DEADLINE_S) == 0, rest_of_log(proc)
    assert all(status == 200 and len(body) == 2 for status, body in results)
    assert len({json.dumps(body) for _, body in results}) == 1  # every worker serves the same model
