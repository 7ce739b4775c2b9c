#!/usr/bin/python3
"""Start-up and exit of the onnxserve binary.

Covers a model given as one file, models that fail to load, one log line per model load and text
logs. Also covers the exit codes for a busy port, an unreadable repository and a missing model
argument."""
import http.client
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

# "2026-12-04T20:25:11.123456Z INFO msg key=value ..."
TEXT_LINE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z (ERROR|WARN|INFO|DEBUG) \S")


def run_binary(args, timeout=120):
    """Run the binary until it exits and return (exit code, stderr text)."""
    result = subprocess.run([harness.server_binary()] + args, stdin=subprocess.DEVNULL,
                            capture_output=True, timeout=timeout)
    return result.returncode, result.stderr.decode("utf-8", "replace")


class LifecycleTest(harness.ServerTestCase):
    def assertNoSanitizerReports(self, stderr):
        self.assertEqual(harness.sanitizer_lines(stderr.splitlines()), [],
                         f"sanitizer reports:\n{stderr}")

    def test_model_file_named_after_file(self):
        server = self.start_server([os.path.join(harness.test_data_dir(), "scale.onnx")])
        response = server.get("/v2/models/scale")
        self.assertStatus(response, 200, "GET /v2/models/scale")
        self.assertEqual(response.json()["versions"], ["1"], "versions of a single model file")

    def test_each_model_load_logged_once(self):
        server = self.start_server(["--model-repository",
                                    os.path.join(harness.test_data_dir(), "repo")])
        for name in ("identity", "scale", "slow"):
            loaded = server.find_logs(msg="model loaded", model=name)
            self.assertEqual(len(loaded), 1, f"'model loaded' lines for {name}")
            self.assertIn("load_us", loaded[0], f"load time in {loaded[0]}")
            self.assertIn("inputs", loaded[0], f"inputs in {loaded[0]}")
            self.assertIn("outputs", loaded[0], f"outputs in {loaded[0]}")
        failed = server.find_logs(msg="model failed to load", model="broken")
        self.assertEqual(len(failed), 1, "'model failed to load' lines for the broken model")
        summary = server.find_logs(msg="models loaded")
        self.assertEqual(len(summary), 1, "'models loaded' summary lines")
        self.assertEqual(summary[0]["ready"], 3, f"ready count in {summary[0]}")
        self.assertEqual(summary[0]["unavailable"], 1, f"unavailable count in {summary[0]}")

    def test_starts_with_no_model_ready(self):
        with tempfile.TemporaryDirectory() as folder:
            missing = os.path.join(folder, "absent.onnx")
            server = self.start_server([missing])
            response = server.get("/healthz")
            self.assertStatus(response, 200, "GET /healthz")
            models = response.json()["models"]
            self.assertEqual([m["name"] for m in models], ["absent"], f"/healthz models {models}")
            self.assertEqual(models[0]["state"], "UNAVAILABLE", f"state in {models[0]}")
            self.assertTrue(models[0]["reason"], f"no reason in {models[0]}")
            self.assertEqual(len(server.find_logs(msg="model failed to load")), 1,
                             "'model failed to load' lines")

    def test_busy_port_exits_1(self):
        server = self.start_server([os.path.join(harness.test_data_dir(), "scale.onnx")])
        code, stderr = run_binary(["--http-port", str(server.port), "--metrics-port", "0",
                                   os.path.join(harness.test_data_dir(), "scale.onnx")])
        self.assertNoSanitizerReports(stderr)
        self.assertEqual(code, 1, f"exit code with port {server.port} in use; stderr:\n{stderr}")
        self.assertIn("failed to start the HTTP server", stderr, "log line for a busy port")
        self.assertIn("in use", stderr, "error for a busy port")
        # The port is checked before loading, so a slow model load does not delay the error.
        self.assertNotIn('"model loaded"', stderr, "models loaded before the port was checked")

    def test_unreadable_repository_exits_1(self):
        with tempfile.TemporaryDirectory() as folder:
            absent = os.path.join(folder, "no-such-repository")
            code, stderr = run_binary(["--http-port", "0", "--metrics-port", "0",
                                       "--model-repository", absent])
        self.assertNoSanitizerReports(stderr)
        self.assertEqual(code, 1, f"exit code for a missing repository; stderr:\n{stderr}")
        self.assertIn("failed to read the model repository", stderr, "log line")
        self.assertIn("no-such-repository", stderr, "the folder in the log line")

    def test_missing_model_argument_exits_2(self):
        code, stderr = run_binary(["--http-port", "0", "--metrics-port", "0"])
        self.assertNoSanitizerReports(stderr)
        self.assertEqual(code, 2, f"exit code without a model; stderr:\n{stderr}")
        self.assertIn("--model-repository", stderr, "error without a model")
        self.assertIn("MODEL.onnx", stderr, "error without a model")

    def test_text_log_format(self):
        command = [harness.server_binary(), "--host", harness.HOST, "--http-port", "0",
                   "--metrics-port", "0", "--log-format", "text", os.path.join(harness.test_data_dir(), "scale.onnx")]
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        try:
            lines = []
            port = None
            deadline = time.monotonic() + 120
            while port is None and time.monotonic() < deadline:
                raw = proc.stderr.readline()
                if not raw:
                    break
                line = raw.decode("utf-8", "replace").rstrip("\n")
                lines.append(line)
                match = re.search(r" INFO HTTP server listening .*\bhttp_port=(\d+)", line)
                if match:
                    port = int(match.group(1))
            self.assertIsNotNone(port, "no text 'HTTP server listening' line:\n" + "\n".join(lines))

            conn = http.client.HTTPConnection(harness.HOST, port, timeout=60)
            conn.request("GET", "/v2/health/live", headers={"X-Request-ID": "id with space"})
            status = conn.getresponse().status
            conn.close()
            self.assertEqual(status, 200, "GET /v2/health/live")

            proc.send_signal(signal.SIGTERM)
            _, rest = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        text = "\n".join(lines) + "\n" + rest.decode("utf-8", "replace")
        self.assertNoSanitizerReports(text)
        self.assertEqual(proc.returncode, 0, f"exit code after SIGTERM; stderr:\n{text}")
        for line in text.splitlines():
            if line:
                self.assertRegex(line, TEXT_LINE, "text log line")
        self.assertIn('request_id="id with space"', text, "quoted request id in a text line")


if __name__ == "__main__":
    unittest.main(verbosity=2)
