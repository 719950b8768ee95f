"""The skeleton the cloud fakes (test/fake_*.py) share: their command line,
their HTTP/1.1 handler basics (quiet log, JSON and text replies, the request
body), the /_conf merge and the serve loop on 127.0.0.1.

Contract of a fake: `fake_X.py [--stdin] CONF.json`; it listens on a port the
kernel chooses on 127.0.0.1, prints "port N" on stdout once listening and,
with --stdin, exits when its stdin closes (test/unit/helper_server.c and the
integration harness rely on both).
"""
import http.server
import json
import os
import sys
import threading


def load_conf(argv=None):
    """(CONF, watch) from the command line [--stdin] CONF.json."""
    args = list(sys.argv[1:] if argv is None else argv)
    watch = bool(args) and args[0] == "--stdin"
    if watch:
        args = args[1:]
    with open(args[0]) as f:
        return json.load(f), watch


def merge_conf(conf, update):
    """Merges a /_conf request into conf: an object into an object key by key,
    anything else replaces the value. The caller holds its lock."""
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(conf.get(k), dict):
            conf[k].update(v)
        else:
            conf[k] = v


class Handler(http.server.BaseHTTPRequestHandler):
    """Base request handler: keep-alive, no access log, JSON replies typed
    content_type (a fake overrides it where its service answers otherwise)."""

    protocol_version = "HTTP/1.1"
    content_type = "application/json"

    def log_message(self, *a):
        pass

    def send_raw(self, status, body, ctype, headers=()):
        """Sends body (bytes) with Content-Type ctype, Content-Length and headers."""
        self.send_response(status)
        if ctype is not None:
            self.send_header("Content-Type", ctype)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send(self, status, obj, headers=()):
        """Sends obj as JSON."""
        self.send_raw(status, json.dumps(obj).encode(), self.content_type, headers)

    def send_text(self, status, text, ctype="text/plain"):
        self.send_raw(status, text.encode(), ctype)

    def body(self):
        """The request body (bytes; empty without Content-Length)."""
        n = int(self.headers.get("Content-Length", "0"))
        return self.rfile.read(n) if n else b""


def serve(handler, watch):
    """Listens on 127.0.0.1 (port from the kernel), prints "port N", serves
    until stdin closes (watch) or forever."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    sys.stdout.write("port %d\n" % srv.server_address[1])
    sys.stdout.flush()
    if watch:
        def stdin_watch():
            sys.stdin.read()
            os._exit(0)
        threading.Thread(target=stdin_watch, daemon=True).start()
    srv.serve_forever()
