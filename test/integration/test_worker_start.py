"""A start whose reply is lost: the plane took the offer (the try is running)
but the worker never heard so. The worker must ask again (the plane confirms a
repeated start of the same try) and run the task exactly once, instead of
dropping it and letting the plane fail it as "not running on its agent".

The fault is injected by a small HTTP proxy on 127.0.0.1 between the worker
and a real plane: it forwards every request, and for the first `start` calls it
forwards the request and then closes the worker's connection without the
reply, three times in a row (libcurl itself resends once on a reused
connection that closes before replying). No real server can lose one specific reply on demand, hence the proxy."""
import http.client
import http.server
import os
import threading

import harness
import workerfix


class DropFirstStartReply(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream = None
    dropped = []

    def log_message(self, fmt, *args):
        pass

    def forward(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        hdrs = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
        c = http.client.HTTPConnection("127.0.0.1", self.upstream, timeout=60)
        c.request(self.command, self.path, body=body, headers=hdrs)
        r = c.getresponse()
        data = r.read()
        if self.path.endswith("/start") and len(self.dropped) < 3:
            self.dropped.append(self.path)
            self.close_connection = True  # the plane took it; the worker never hears
            c.close()
            return
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        c.close()

    do_GET = do_POST = do_PUT = do_DELETE = forward


class StartReplyLost(workerfix.WorkerCase):
    def test_lost_start_reply_runs_the_task_once(self):
        self.start_plane()
        DropFirstStartReply.upstream = self.port
        DropFirstStartReply.dropped = []
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), DropFirstStartReply)
        srv.daemon_threads = True
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        self.addCleanup(srv.server_close)
        self.addCleanup(srv.shutdown)
        marks = os.path.join(self.tmp, "marks")
        self.put_dag({"dag_id": "once", "tasks": [
            {"task_id": "t", "shell": f"echo ran >> {marks}"}]})
        w = self.start_worker(url=f"http://127.0.0.1:{srv.server_address[1]}")
        self.wait_registered(w)
        run = self.trigger("once")
        info = self.wait_run("once", run, timeout=30)
        self.assertEqual(len(DropFirstStartReply.dropped), 3)
        self.assertEqual(info["state"], "success", info)
        self.assertEqual(workerfix.lines(marks), ["ran"])
        self.assertEqual(self.tis(info)["t"]["try_number"], 1)
        self.assertIn("start not confirmed", w.output())
