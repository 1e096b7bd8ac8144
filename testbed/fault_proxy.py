"""An HTTP proxy on loopback in front of moto that refuses chosen AWS operations for a while.

Every AWS call of the workers goes through it (their `AWS_ENDPOINT_URL` is the proxy's), so it
also keeps the clock of each RunTask: when it was sent, for which flow run (the override's
`PREFECT__FLOW_RUN_ID`), and what the caller got back. A `Fault` answers one operation, matched
by its `X-Amz-Target` suffix (`.RunTask`, or `AmazonSQS.` for the whole queue service), with an
AWS error instead of forwarding it, between two times on the proxy's monotonic clock.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional
from urllib.parse import urlparse

# What ECS answers when it throttles a caller (botocore retries the code in every retry mode).
THROTTLED = (400, {"__type": "ThrottlingException", "message": "Rate exceeded"})
UNAVAILABLE = (503, {"__type": "ServiceUnavailableException", "message": "Service Unavailable"})
# What SQS answers for a queue that is gone (deleted, or a name that was never created).
QUEUE_MISSING = (400, {"__type": "com.amazonaws.sqs#QueueDoesNotExist",
                       "message": "The specified queue does not exist."})


@dataclass
class Fault:
    target: str  # a suffix of X-Amz-Target: ".RunTask", or "AmazonSQS." for every SQS call
    start: float  # proxy clock (time.monotonic())
    end: float
    answer: tuple[int, dict] = UNAVAILABLE

    def applies(self, target: str, now: float) -> bool:
        matches = target.endswith(self.target) or target.startswith(self.target)
        return matches and self.start <= now < self.end


@dataclass
class RunTaskCall:
    at: float
    flow_run_id: Optional[str]
    status: int
    task_arns: list[str] = field(default_factory=list)


class FaultProxy:
    def __init__(self, upstream: str):
        self.upstream = urlparse(upstream)
        self.faults: list[Fault] = []
        self.run_tasks: list[RunTaskCall] = []
        self.refused: dict[str, int] = {}
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                proxy._handle(self)

            do_POST = do_PUT = do_DELETE = do_HEAD = do_GET

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address) -> None:
                pass  # a client that hung up (a worker stopped mid-call) is no news

        self._server = Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        # A short poll: stop() waits for the loop to notice, at most this long (0.5 s by default).
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,),
                                        daemon=True)
        self._thread.start()

    def fail(self, target: str, seconds: float, answer: tuple[int, dict] = UNAVAILABLE,
             after: float = 0.0) -> Fault:
        start = time.monotonic() + after
        fault = Fault(target, start, start + seconds, answer)
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()
            self.run_tasks.clear()
            self.refused.clear()

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        target = request.headers.get("X-Amz-Target", "")
        now = time.monotonic()
        with self._lock:
            fault = next((f for f in self.faults if f.applies(target, now)), None)
            if fault is not None:
                self.refused[target] = self.refused.get(target, 0) + 1
        # Each RunTask is recorded before its answer leaves: whoever got the answer finds it.
        if fault is not None:
            status, payload = fault.answer
            if target.endswith(".RunTask"):
                self._record(now, body, status, b"")
            self._answer(request, status, json.dumps(payload).encode(),
                         {"Content-Type": "application/x-amz-json-1.1",
                          "x-amzn-ErrorType": payload["__type"]})
            return
        connection = http.client.HTTPConnection(str(self.upstream.hostname), self.upstream.port,
                                                timeout=60)
        try:
            headers = {k: v for k, v in request.headers.items()
                       if k.lower() not in ("host", "connection")}
            connection.request(request.command, request.path, body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            if target.endswith(".RunTask"):
                self._record(now, body, response.status, answer)
            self._answer(request, response.status, answer,
                         {k: v for k, v in response.getheaders()
                          if k.lower() not in ("transfer-encoding", "connection",
                                               "content-length")})
        finally:
            connection.close()

    def _record(self, at: float, body: bytes, status: int, answer: bytes) -> None:
        flow_run_id = None
        try:
            request = json.loads(body)
            for override in request.get("overrides", {}).get("containerOverrides", []):
                for item in override.get("environment", []):
                    if item["name"] == "PREFECT__FLOW_RUN_ID":
                        flow_run_id = item["value"]
        except (ValueError, KeyError, AttributeError):
            pass
        arns = []
        if status == 200:
            arns = [t["taskArn"] for t in json.loads(answer).get("tasks", [])]
        with self._lock:
            self.run_tasks.append(RunTaskCall(at, flow_run_id, status, arns))

    @staticmethod
    def _answer(request: BaseHTTPRequestHandler, status: int, body: bytes,
                headers: dict[str, str]) -> None:
        request.send_response(status)
        for key, value in headers.items():
            request.send_header(key, value)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(body)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
