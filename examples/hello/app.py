"""hello: a dependency-free example web app for Berth (Python 3.11 stdlib only).

Run: PORT=8000 python3 app.py        (see README.md for endpoints and switches)
"""

import html
import json
import os
import random
import signal
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pg

MAX_UPLOAD = 16 * 1024 * 1024  # bytes


def _env_number(name, default, kind=float, low=None, high=None):
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        sys.exit(f"hello: {name}={raw!r} is not a number")
    if (low is not None and value < low) or (high is not None and value > high):
        sys.exit(f"hello: {name}={raw!r} is out of range [{low}, {high}]")
    return value


PORT = _env_number("PORT", 8000, int, 1, 65535)
RELEASE = os.environ.get("BERTH_RELEASE", "dev")
REPLICA = os.environ.get("BERTH_REPLICA", "web.0")
SERVICE = os.environ.get("BERTH_SERVICE", "web")
ENVIRONMENT = os.environ.get("BERTH_ENV", "")
VERSION = os.environ.get("APP_VERSION", "0")
UPLOADS_DIR = os.environ.get("UPLOADS_DIR", "")

FAIL_HEALTH = os.environ.get("FAIL_HEALTH", "") not in ("", "0", "false", "no")
ERROR_RATE = _env_number("ERROR_RATE", 0.0, float, 0.0, 1.0)
SLOW_MS = _env_number("SLOW_MS", 0, int, 0)
# Comma-separated path prefixes SLOW_MS applies to (all paths when empty).
# The Cache-Control of every answer (the edge's cache tests make them cacheable).
CACHE_CONTROL = os.environ.get("CACHE_CONTROL", "no-store")
SLOW_PATHS = [p for p in os.environ.get("SLOW_PATHS", "").split(",") if p.strip()]
BOOT_MS = _env_number("BOOT_MS", 0, int, 0)

_log_lock = threading.Lock()
_state_lock = threading.Lock()
_local_visits = 0  # used when there is no database
_in_flight = 0
_served = 0  # requests answered other than /health and /metrics (for /metrics)
_stopping = threading.Event()


def log(line):
    with _log_lock:
        sys.stdout.write(f"{REPLICA} {line}\n")
        sys.stdout.flush()


def _valid_name(name):
    return (
        bool(name)
        and "/" not in name
        and "\\" not in name
        and ".." not in name
        and not name.startswith(".")  # dot files are our temporary files
        and "\0" not in name
        and len(name) <= 200
    )


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive for load clients; we always send Content-Length
    server_version = "hello"
    sys_version = ""

    def version_string(self):
        return "hello"
    timeout = 30  # idle keep-alive connections are dropped after this long

    # ---- plumbing -------------------------------------------------------

    def log_request(self, code="-", size="-"):
        code = getattr(code, "value", code)
        ms = (time.monotonic() - getattr(self, "_t0", time.monotonic())) * 1000
        log(f"{self.command or '-'} {self.path if hasattr(self, 'path') else '-'} {code} {ms:.1f}ms")

    def log_message(self, fmt, *args):  # errors from the base class (bad requests...)
        log("note: " + (fmt % args))

    def reply(self, status, body=b"", ctype="text/plain; charset=utf-8", headers=None):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", CACHE_CONTROL)
        self.send_header("X-Berth-Replica", REPLICA)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        unread = not self._body_read and (
            self.headers.get("Content-Length", "0") not in ("", "0")
            or "Transfer-Encoding" in self.headers
        )
        if _stopping.is_set() or unread:  # an unread body would corrupt the next request
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def reply_json(self, status, obj):
        self.reply(status, json.dumps(obj) + "\n", "application/json")

    def _handle(self, method):
        global _in_flight
        self._t0 = time.monotonic()
        self._body_read = False
        global _served
        with _state_lock:
            _in_flight += 1
        try:
            path = urllib.parse.urlsplit(self.path).path
            if path not in ("/health", "/metrics"):
                with _state_lock:
                    _served += 1
            if path != "/health":
                if SLOW_MS and (
                    not SLOW_PATHS or any(path.startswith(p.strip()) for p in SLOW_PATHS)
                ):
                    time.sleep(SLOW_MS / 1000)
                if ERROR_RATE and random.random() < ERROR_RATE:
                    return self.reply(500, "injected error (ERROR_RATE)\n")
            return self.route(method, path)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # keep serving; report the failure
            log(f"error: {type(exc).__name__}: {exc}")
            try:
                self.reply(500, f"internal error: {exc}\n")
            except OSError:
                self.close_connection = True
        finally:
            with _state_lock:
                _in_flight -= 1

    def do_GET(self):
        self._handle("GET")

    def do_HEAD(self):
        self._handle("HEAD")

    def do_POST(self):
        self._handle("POST")

    def do_PUT(self):
        self._handle("PUT")

    def do_DELETE(self):
        self._handle("DELETE")

    # ---- routes ---------------------------------------------------------

    def route(self, method, path):
        read = method in ("GET", "HEAD")
        if path == "/health":
            if not read:
                return self.not_allowed("GET, HEAD")
            if FAIL_HEALTH:
                return self.reply(503, "failing (FAIL_HEALTH)\n")
            return self.reply(200, "ok\n")
        if path == "/metrics":
            if not read:
                return self.not_allowed("GET, HEAD")
            return self.metrics()
        if path == "/":
            return self.index() if read else self.not_allowed("GET, HEAD")
        if path == "/whoami":
            return self.whoami() if read else self.not_allowed("GET, HEAD")
        if path == "/sleep":
            if not read:
                return self.not_allowed("GET, HEAD")
            return self.sleep()
        if path == "/visits":
            if read:
                return self.visits(record=False)
            if method == "POST":
                return self.visits(record=True)
            return self.not_allowed("GET, HEAD, POST")
        if path in ("/files", "/files/"):
            return self.list_files() if read else self.not_allowed("GET, HEAD")
        if path.startswith("/files/"):
            name = urllib.parse.unquote(path[len("/files/"):])
            if method == "PUT":
                return self.put_file(name)
            if read:
                return self.get_file(name)
            return self.not_allowed("GET, HEAD, PUT")
        return self.reply(404, "not found\n")

    def metrics(self):
        """`/metrics`: the app's own counters in the Prometheus text format."""
        with _state_lock:
            served, in_flight = _served, _in_flight
        body = (
            "# HELP hello_requests_total Requests answered (not /health or /metrics)\n"
            "# TYPE hello_requests_total counter\n"
            f'hello_requests_total{{version="{VERSION}"}} {served}\n'
            "# TYPE hello_in_flight gauge\n"
            f"hello_in_flight {in_flight}\n"
        )
        return self.reply(200, body, "text/plain; version=0.0.4; charset=utf-8")

    def sleep(self):
        """`/sleep?ms=N`: answers after N ms (at most 10 s), for a slow path of any release."""
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        try:
            ms = min(max(int(query.get("ms", ["0"])[0]), 0), 10_000)
        except ValueError:
            return self.reply(400, "ms must be a whole number\n")
        time.sleep(ms / 1000)
        return self.reply_json(200, dict(self._identity(), slept_ms=ms))

    def not_allowed(self, allow):
        self.reply(405, "method not allowed\n", headers={"Allow": allow})

    def _identity(self):
        return {
            "release": RELEASE,
            "replica": REPLICA,
            "version": VERSION,
            "pid": os.getpid(),
            "service": SERVICE,
            "env": ENVIRONMENT,
            "port": PORT,
        }

    def whoami(self):
        self.reply_json(200, self._identity())

    def index(self):
        global _local_visits
        if pg.configured():
            if self.command == "HEAD":
                visits = "(not counted for HEAD)"
            else:
                try:
                    visits = f"{pg.record_visit(RELEASE, REPLICA)} (all replicas, PostgreSQL)"
                except pg.DatabaseError as exc:
                    return self.reply(503, f"database unavailable: {exc}\n")
        else:
            with _state_lock:
                if self.command != "HEAD":
                    _local_visits += 1
                visits = f"{_local_visits} (this replica only, in memory: no DATABASE_URL)"
        rows = [
            ("release", RELEASE),
            ("replica", REPLICA),
            ("version", VERSION),
            ("environment", ENVIRONMENT or "-"),
            ("pid", os.getpid()),
            ("visits", visits),
            ("uploads", UPLOADS_DIR or "(no UPLOADS_DIR)"),
        ]
        table = "\n".join(
            f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows
        )
        page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>hello from {html.escape(REPLICA)}</title>
<style>body{{font-family:sans-serif;margin:2em}}th{{text-align:left;padding-right:1em}}</style>
</head><body>
<h1>Hello from Berth</h1>
<table>
{table}
</table>
<p><a href="/whoami">/whoami</a> &middot; <a href="/visits">/visits</a> &middot;
<a href="/files">/files</a> &middot; <a href="/health">/health</a></p>
</body></html>
"""
        self.reply(200, page, "text/html; charset=utf-8")

    def visits(self, record):
        if not pg.configured():
            return self.reply(503, "no database configured (DATABASE_URL is not set)\n")
        try:
            if record:
                count = pg.record_visit(RELEASE, REPLICA)
            else:
                count = pg.count_visits()
        except pg.DatabaseError as exc:
            return self.reply(503, f"database unavailable: {exc}\n")
        self.reply_json(201 if record else 200, {"visits": count, "replica": REPLICA})

    # ---- uploads --------------------------------------------------------

    def _uploads(self):
        if not UPLOADS_DIR:
            self.reply(503, "no uploads volume (UPLOADS_DIR is not set)\n")
            return None
        return UPLOADS_DIR

    def list_files(self):
        folder = self._uploads()
        if folder is None:
            return
        try:
            names = sorted(
                entry.name
                for entry in os.scandir(folder)
                if entry.is_file() and not entry.name.startswith(".")
            )
        except FileNotFoundError:
            names = []
        self.reply_json(200, names)

    def get_file(self, name):
        folder = self._uploads()
        if folder is None:
            return
        if not _valid_name(name):
            return self.reply(400, "bad file name\n")
        try:
            with open(os.path.join(folder, name), "rb") as f:
                data = f.read()
        except (FileNotFoundError, IsADirectoryError):
            return self.reply(404, "no such file\n")
        self.reply(200, data, "application/octet-stream")

    def put_file(self, name):
        folder = self._uploads()
        if folder is None:
            return
        if not _valid_name(name):
            return self.reply(400, "bad file name (no '/', '..' or leading '.')\n")
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            return self.reply(411, "Content-Length required\n")
        length = int(length)
        if length > MAX_UPLOAD:
            return self.reply(413, f"too large (max {MAX_UPLOAD} bytes)\n")
        os.makedirs(folder, exist_ok=True)
        # Write to a hidden temporary file, then rename: other replicas never see half a file.
        tmp = os.path.join(folder, f".{name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            with open(tmp, "wb") as f:
                left = length
                while left:
                    chunk = self.rfile.read(min(left, 65536))
                    if not chunk:
                        raise ConnectionResetError("client sent a short body")
                    f.write(chunk)
                    left -= len(chunk)
            self._body_read = True
            os.replace(tmp, os.path.join(folder, name))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        self.reply_json(201, {"name": name, "size": length, "replica": REPLICA})


def main():
    server = None

    def on_signal(signum, _frame):
        if server is None:  # still booting (BOOT_MS): nothing to drain
            log(f"got {signal.Signals(signum).name} while booting, exiting")
            sys.exit(0)
        if not _stopping.is_set():
            _stopping.set()
            log(f"got {signal.Signals(signum).name}, shutting down")
            # shutdown() waits for serve_forever() to return, so it must not run on
            # the main thread (the one inside serve_forever()).
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    if BOOT_MS:
        log(f"booting slowly: sleeping {BOOT_MS}ms before binding (BOOT_MS)")
        time.sleep(BOOT_MS / 1000)

    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    server.daemon_threads = True
    switches = [
        f"{k}={os.environ[k]}"
        for k in ("FAIL_HEALTH", "ERROR_RATE", "SLOW_MS", "SLOW_PATHS", "BOOT_MS")
        if os.environ.get(k)
    ]
    log(
        f"listening on http://127.0.0.1:{PORT} release={RELEASE} version={VERSION} "
        f"pid={os.getpid()} db={'yes' if pg.configured() else 'no'} "
        f"uploads={UPLOADS_DIR or '-'}" + (" " + " ".join(switches) if switches else "")
    )
    # A SIGTERM that lands between the bind and this line already asked for shutdown();
    # serve_forever() then returns at once.
    server.serve_forever(poll_interval=0.1)

    # No new connections are accepted; give in-flight requests a moment to finish.
    deadline = time.monotonic() + 0.8
    while time.monotonic() < deadline:
        with _state_lock:
            if _in_flight == 0:
                break
        time.sleep(0.02)
    server.server_close()
    log("stopped")
    sys.exit(0)


if __name__ == "__main__":
    main()
