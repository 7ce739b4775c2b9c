#!/usr/bin/python3
"""The stuck-inference watchdog.

A request on the slow test model runs for a few seconds while the server runs with a low
--stuck-inference-ms and --stuck-inference-fatal-ms. The watchdog must log the run once with a
native stack, count it in onnxserve_stuck_inferences_total, make /v2/health/live fail once the
fatal limit has passed, and make it succeed again when the run has ended."""
import http.client
import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

STUCK_MS = 300
FATAL_MS = 1000
# The run must outlast the fatal limit by a margin that a loaded machine keeps.
RUN_SECONDS = 4.0
WAIT_S = 60.0


def scrape(server):
    connection = http.client.HTTPConnection(harness.HOST, server.metrics_port, timeout=30)
    try:
        connection.request("GET", "/metrics")
        return connection.getresponse().read().decode()
    finally:
        connection.close()


def stuck_total(text):
    for line in text.splitlines():
        if line.startswith("onnxserve_stuck_inferences_total "):
            return float(line.split()[1])
    raise AssertionError("no onnxserve_stuck_inferences_total sample in the scrape")


class WatchdogTest(harness.ServerTestCase):
    def wait_until(self, condition, description):
        deadline = time.monotonic() + WAIT_S
        while not condition():
            if time.monotonic() > deadline:
                self.fail(f"timed out waiting for {description}")
            time.sleep(0.05)

    def test_stuck_run_logged_counted_and_not_live(self):
        repository = os.path.join(harness.test_data_dir(), "repo")
        server = self.start_server(["--model-repository", repository,
                                    "--stuck-inference-ms", str(STUCK_MS),
                                    "--stuck-inference-fatal-ms", str(FATAL_MS)])
        rounds = harness.calibrate_slow_rounds(server, RUN_SECONDS)
        # Calibration runs may pass the limit themselves: count from here.
        self.wait_until(lambda: server.get("/v2/health/live").status == 200, "live before")
        before = stuck_total(scrape(server))

        result = {}

        def send():
            result["response"] = server.post_json("/v2/models/slow/infer",
                                                  harness.slow_body(rounds),
                                                  headers={"X-Request-ID": "stuck-1"},
                                                  timeout=300)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        self.wait_until(lambda: server.find_logs(msg="inference stuck", request_id="stuck-1"),
                        "the watchdog's log line")
        self.wait_until(lambda: server.get("/v2/health/live").status == 503,
                        "/v2/health/live to fail after the fatal limit")
        self.assertEqual(stuck_total(scrape(server)), before + 1, "stuck runs counted")
        sender.join(300)
        self.assertFalse(sender.is_alive(), "the slow request did not finish")
        self.assertStatus(result["response"], 200, "the slow request")
        self.wait_until(lambda: server.get("/v2/health/live").status == 200,
                        "/v2/health/live to succeed once the run ended")

        records = server.find_logs(msg="inference stuck", request_id="stuck-1")
        self.assertEqual(len(records), 1, f"one report per run: {records}")
        record = records[0]
        self.assertEqual(record.get("model"), "slow", f"model in {record}")
        self.assertGreaterEqual(int(record["running_ms"]), STUCK_MS, f"running_ms in {record}")
        self.assertEqual(int(record["threshold_ms"]), STUCK_MS, f"threshold_ms in {record}")
        stack = record.get("stack", "")
        # Several frames, the inner ones inside ONNX Runtime, which runs the model.
        self.assertGreaterEqual(stack.count(" | "), 3, f"stack in {record}")
        self.assertIn("libonnxruntime", stack, f"stack in {record}")
        self.assertNotIn("/", stack.split("(")[0], f"folders left in the stack: {record}")
        failed = server.find_logs(msg="request failed", path="/v2/health/live")
        self.assertTrue(any("--stuck-inference-fatal-ms" in r.get("error", "") for r in failed),
                        f"the failed liveness check names the limit: {failed}")


if __name__ == "__main__":
    unittest.main(verbosity=2)
