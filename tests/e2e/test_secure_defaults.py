#!/usr/bin/python3
"""Secure defaults.

Without flags the server listens on 127.0.0.1 only and model control is off, so load and unload
are rejected. Error messages sent to clients leave out filesystem paths, which stay in the
server's log, and text that a client sends is escaped in log lines."""
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


class DefaultListenTest(unittest.TestCase):
    def test_listens_on_loopback_by_default(self):
        command = [harness.server_binary(), "--http-port", "0", "--metrics-port", "0",
                   os.path.join(harness.test_data_dir(), "scale.onnx")]
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        try:
            record = None
            for line in proc.stderr:
                try:
                    parsed = json.loads(line)
                except ValueError:
                    continue
                if parsed.get("msg") == harness.LISTENING_MSG:
                    record = parsed
                    break
            self.assertIsNotNone(record, "the server logs where it listens")
            self.assertEqual(record["host"], "127.0.0.1")
        finally:
            proc.terminate()
            proc.communicate(timeout=60)
        self.assertEqual(proc.returncode, 0)


class SecureDefaultsTest(harness.ServerTestCase):
    @classmethod
    def setUpClass(cls):
        cls.tempdir = tempfile.TemporaryDirectory(prefix="oxs-secure-")
        cls.repo = os.path.join(cls.tempdir.name, "private-repository-folder")
        harness.make_repository(cls.repo, {
            "scale": os.path.join(harness.test_data_dir(), "scale.onnx")})
        broken = os.path.join(cls.repo, "broken", "1")
        os.makedirs(broken)
        with open(os.path.join(broken, "model.onnx"), "wb") as file:
            file.write(b"this is not an ONNX model")

    @classmethod
    def tearDownClass(cls):
        cls.tempdir.cleanup()

    def setUp(self):
        self.server = self.start_server(["--model-repository", self.repo, "--strict-readiness",
                                         "false"])

    def test_load_and_unload_rejected(self):
        for action in ("load", "unload"):
            response = self.server.post_json(f"/v2/repository/models/scale/{action}", {})
            self.assertEqual(response.status, 403, response)
            self.assertIn("--model-control-mode", response.json()["error"])
        ready = self.server.get("/v2/models/scale/ready")
        self.assertEqual(ready.status, 200)

    def test_client_errors_have_no_paths(self):
        responses = [
            self.server.post_json("/v2/repository/index", {}),
            self.server.get("/v2/models/broken"),
            self.server.get("/v2/models/broken/ready"),
            self.server.post_json("/v2/models/broken/infer", {"inputs": []}),
        ]
        for response in responses:
            self.assertNotIn(self.tempdir.name.encode(), response.body, response)
            self.assertNotIn(b"private-repository-folder", response.body, response)
        index = responses[0].json()
        broken = [entry for entry in index if entry["name"] == "broken"]
        self.assertEqual(broken[0]["state"], "UNAVAILABLE")
        self.assertNotEqual(broken[0].get("reason", ""), "")
        # The server's own log keeps the path, for the operator.
        self.assertIn(self.repo, self.server.stderr_text())

    def test_client_text_escaped_in_log(self):
        response = self.server.get("/v2/models/%1b%5b31mred%0aline")
        self.assertEqual(response.status // 100, 4)
        # The request's line parses as one JSON object, with the escape sequence escaped.
        record = self.server.wait_for_log(lambda r: "red" in json.dumps(r), 30)
        self.assertIsNotNone(record, "the request's log line")
        for line in self.server.lines:
            self.assertNotIn("\x1b", line)

    def test_client_text_escaped_in_text_log(self):
        # The harness finds the port in the JSON log, so the format changes once running.
        changed = self.server.post_json("/v2/logging", {"log_format": "text"})
        self.assertEqual(changed.status, 200, changed)
        response = self.server.get("/v2/models/%1b%5b31mred%0aline")
        self.assertEqual(response.status // 100, 4)
        deadline = time.monotonic() + 30
        while "red" not in self.server.stderr_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        text = self.server.stderr_text()
        self.assertIn("red", text, "the request's log line")
        self.assertNotIn("\x1b", text)


if __name__ == "__main__":
    unittest.main(verbosity=2)
