"""XCom values and task logs in Azure Blob Storage: a real remex-plane and
remex-worker with xcom.store and logs.store on Azurite (Microsoft's emulator,
which checks SAS signatures; installed by mk/azurite.sh under
build/node/azurite), authenticated with an account SAS from a file
(xcom.azure.sas_token: {file: ...})."""
import base64
import hashlib
import hmac
import os
import unittest
import urllib.parse
import urllib.request

from workerfix import WorkerCase

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
AZURITE = os.path.join(ROOT, "build", "node", "azurite", "node_modules", "azurite")
# Azurite's well-known development account key (public, documented by Microsoft).
DEV_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
           "KBHBeksoGMGw==")
VERSION = "2021-08-06"


def account_sas(key_b64, perms="rwdlac"):
    """An account SAS (blob service, all resource types) signed with key_b64."""
    sts = (f"devstoreaccount1\n{perms}\nb\nsco\n\n2099-01-01T00:00:00Z\n\nhttps,http\n"
           f"{VERSION}\n\n")
    sig = base64.b64encode(hmac.new(base64.b64decode(key_b64), sts.encode(),
                                    hashlib.sha256).digest()).decode()
    return (f"sv={VERSION}&ss=b&srt=sco&sp={perms}&se=2099-01-01T00:00:00Z&spr=https,http"
            f"&sig={urllib.parse.quote(sig, safe='')}")


@unittest.skipUnless(os.path.isdir(AZURITE), "azurite not installed (run mk/azurite.sh)")
class TestAzureStore(WorkerCase):
    def start_azurite(self):
        d = os.path.join(self.tmp, "azurite")
        os.makedirs(d)
        p, self.azport = self.spawn_server(
            "azurite", ["node", os.path.join(ROOT, "test", "azurite.js"), d], timeout=30)
        self.endpoint = f"http://127.0.0.1:{self.azport}/devstoreaccount1"
        self.sas = account_sas(DEV_KEY)
        self.blob("PUT", "remex?restype=container", b"")
        return p

    def blob(self, method, path, body=None):
        """A Blob service call with the test's SAS; returns (status, body)."""
        url = f"{self.endpoint}/{path}{'&' if '?' in path else '?'}{self.sas}"
        req = urllib.request.Request(url, data=body, method=method,
                                     headers={"x-ms-version": VERSION})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def xcom_yaml(self):
        return "  store: az://devstoreaccount1/remex/agent-a\n" + self.xcom_extra

    def az_yaml(self, sas):
        sas_file = self.write("azure-sas", "?" + sas + "\n", mode=0o600)
        return ("  azure:\n"
                f"    endpoint: {self.endpoint}\n"
                f"    sas_token: {{file: {sas_file}}}\n")

    def test_xcom_round_trip_and_log_upload_with_sas(self):
        self.start_plane()
        self.start_azurite()
        self.xcom_extra = self.az_yaml(self.sas)
        self.put_dag({"dag_id": "azx", "tasks": [
            {"task_id": "push", "shell": "remex-task xcom push rows '{\"n\": 7}' && echo pushed"},
            {"task_id": "pull", "upstream": ["push"],
             "shell": "v=$(remex-task xcom pull --task push rows) && echo got:$v && "
                      "test \"$v\" = '{\"n\": 7}'"},
        ]})
        w = self.start_worker(extra="logs:\n  store: az://devstoreaccount1/remex/logs\n")
        run_id = self.trigger("azx")
        run = self.wait_run("azx", run_id)
        self.assertEqual(run["state"], "success", run)
        # The XCom value is a blob under the XCom layout.
        key = (f"agent-a/xcom/dag_id=azx/run_id={run_id}/task_id=push/map_index=-1/rows")
        st, body = self.blob("GET", "remex/" + urllib.parse.quote(key))
        self.assertEqual(st, 200, body)
        self.assertEqual(body, b'{"n": 7}')
        # The pull task's log was uploaded when its try ended; the plane names the az:// copy.
        ti = self.tis(run)["pull"]
        self.assertTrue(ti["log_uri"].startswith("az://devstoreaccount1/remex/logs/logs/"
                                                 "dag_id=azx/"), ti)
        lkey = ti["log_uri"][len("az://devstoreaccount1/remex/"):]
        st, body = self.blob("GET", "remex/" + urllib.parse.quote(lkey))
        self.assertEqual(st, 200, body)
        self.assertIn(b'got:{"n": 7}', body)
        # The SAS never shows in the worker's output.
        self.assertNotIn(self.sas.split("sig=")[1], w.output())

    def test_sas_signed_with_a_wrong_key_fails_the_task_with_a_clear_reason(self):
        self.start_plane()
        self.start_azurite()
        wrong = account_sas("AAAAvdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
                            "K1SZFPTOtr/KBHBeksoGMGw==")
        self.xcom_extra = self.az_yaml(wrong)
        self.put_dag({"dag_id": "azbad", "tasks": [
            {"task_id": "push", "shell": "remex-task xcom push k v"}]})
        w = self.start_worker()
        run_id = self.trigger("azbad")
        run = self.wait_run("azbad", run_id)
        self.assertEqual(run["state"], "failed", run)
        log = self.task_log("azbad", run_id, "push")
        self.assertIn("HTTP 403", log)
        self.assertIn("the SAS token was refused", log)
        sig = urllib.parse.unquote(wrong.split("sig=")[1])
        self.assertNotIn(wrong.split("sig=")[1], log)
        self.assertNotIn(sig, log)
        self.assertNotIn(wrong.split("sig=")[1], w.output())
        self.assertIsNone(w.p.poll())  # the worker stays up


if __name__ == "__main__":
    unittest.main()
