"""A local Hugging Face Hub stand-in for download tests (loopback only): the two routes a download uses.

    GET /api/models/<owner>/<name>/revision/<rev>?blobs=true  -> {"siblings": [{"rfilename", "size"}]}
    GET /<owner>/<name>/resolve/<rev>/<file>                  -> the file, with Range (206) support

Repositories are folders: ``repos={"owner/name": folder}``. ``throttle`` sleeps per 64 KiB so a test can stop a
download midway; ``requests`` records (path, Range header) of every request.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse


class HubServer:
    def __init__(self, repos: dict[str, Path], throttle_s: float = 0.0) -> None:
        self.repos = {k: Path(v) for k, v in repos.items()}
        self.throttle_s = throttle_s
        self.requests: list[tuple[str, str | None]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                path = unquote(urlparse(self.path).path)
                hub.requests.append((path, self.headers.get("Range")))
                parts = path.strip("/").split("/")
                if parts[:2] == ["api", "models"] and len(parts) >= 4:
                    return self.listing("/".join(parts[2:4]))
                if len(parts) >= 5 and parts[2] == "resolve":
                    return self.file("/".join(parts[:2]), "/".join(parts[4:]))
                self.send_error(404)

            def listing(self, repo: str) -> None:
                folder = hub.repos.get(repo)
                if folder is None:
                    return self.send_error(404, "Repository not found")
                files = [f for f in sorted(folder.rglob("*")) if f.is_file()]
                body = json.dumps(
                    {
                        "id": repo,
                        "siblings": [
                            {"rfilename": str(f.relative_to(folder)), "size": f.stat().st_size} for f in files
                        ],
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def file(self, repo: str, name: str) -> None:
                folder = hub.repos.get(repo)
                target = folder / name if folder is not None else None
                if target is None or not target.is_file():
                    return self.send_error(404, "Entry not found")
                data = target.read_bytes()
                start = 0
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes="):
                    start = int(rng[6:].split("-")[0])
                    if start >= len(data):
                        return self.send_error(416)
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                try:
                    for i in range(start, len(data), 1 << 16):
                        self.wfile.write(data[i : i + (1 << 16)])
                        if hub.throttle_s:
                            time.sleep(hub.throttle_s)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
