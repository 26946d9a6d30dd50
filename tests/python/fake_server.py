"""A tiny cache server for the plugin's fault tests: speaks API v1 (v2 answers
404, like the original server), records every request, and can be told to
misbehave in the ways a real server cannot be made to (garbage, a hang)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeCache:
    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.requests: list[tuple[str, str, bytes]] = []
        self.stored: dict[str, set[str]] = {}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeCache:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def paths(self) -> list[str]:
        return [path for _, path, _ in self.requests]

    def _answer(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.mode == "unauthorized":
            return 401, b'{"error": "unknown token"}'
        if self.mode == "error":
            return 500, b"internal error"
        if self.mode == "garbage":
            return 200, b"\x00\xffnot json at all"
        if self.mode == "hang":
            time.sleep(10)
            return 200, b"{}"
        if path.startswith("/api/v2/"):
            return 404, b"not found"
        request = json.loads(body)
        if path == "/api/v1/query-passed":
            hashes = request["test_file_hashes"]
            ids = [sorted(self.stored.get(h, ())) for h in hashes]
            return 200, json.dumps({"node_ids": ids}).encode()
        if path == "/api/v1/publish":
            for file_hash, ids in request["passed_node_ids_per_test_file"].items():
                self.stored.setdefault(file_hash, set()).update(ids)
            return 200, b"{}"
        return 404, b"not found"

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                fake.requests.append(("POST", self.path, body))
                status, answer = fake._answer(self.path, body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_GET = do_POST

            def log_message(self, *args: object) -> None:
                pass

        return Handler
