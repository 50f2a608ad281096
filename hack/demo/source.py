"""The demo's data source: a small HTTP server that serves `/customers.csv` from memory, so the
story can publish new data at the source while the Dataset refreshes from it."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class DataSource:
    """Serves the latest published CSV on every address of this host."""

    def __init__(self, host: str = "0.0.0.0", port: int = 0) -> None:
        self._body = b""
        self._lock = threading.Lock()
        source = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/customers.csv":
                    self.send_error(404)
                    return
                with source._lock:
                    body = source._body
                self.send_response(200)
                self.send_header("Content-Type", "text/csv")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return  # quiet: the demo narrates

        self._server = ThreadingHTTPServer((host, port), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> DataSource:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def publish(self, text: str) -> None:
        """Replace the served data."""
        with self._lock:
            self._body = text.encode()

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
