#!/usr/bin/python3
"""The thread count is fixed at start: 1,000 connections holding partly sent requests and a full
queue do not add a thread, and requests beyond a model's queue get 503 with Retry-After at
once."""
import http.client
import os
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

HTTP_THREADS = 2
WORKERS = 3
INTRA_OP_THREADS = 2
QUEUE_SIZE = 4
HELD_CONNECTIONS = 1000
# The test repository's models that load (identity, scale, slow). Each gets --workers instances,
# fewer when instances x intra-op threads would exceed the cores (docs/ARCHITECTURE.md).
MODELS = 3
PER_MODEL = min(WORKERS, max(1, len(os.sched_getaffinity(0)) // INTRA_OP_THREADS))
INSTANCES = MODELS * PER_MODEL

# The formula in docs/ARCHITECTURE.md: the main thread, the repository and watchdog threads, the
# I/O threads, each model's instances and ONNX Runtime's process-wide pool. With the inter-op pool
# at 1, ONNX Runtime 1.29 adds intra_op_threads - 1 pool threads plus one helper thread it starts
# beside them.
EXPECTED_THREADS = 1 + 2 + HTTP_THREADS + INSTANCES + INTRA_OP_THREADS

# Threads a sanitizer runtime adds (ThreadSanitizer starts one), set by tests/CMakeLists.txt.
SANITIZER_THREADS = int(os.environ.get("ONNXSERVE_EXTRA_THREADS", "0"))


def hold_request(port, index):
    """Open a connection and send headers announcing 100 body bytes, but only 10 of them."""
    sock = socket.create_connection((harness.HOST, port), timeout=30)
    head = (f"POST /v2/models/scale/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"X-Request-ID: held-{index}\r\nContent-Type: application/json\r\n"
            f"Content-Length: 100\r\n\r\n")
    sock.sendall(head.encode() + b'{"inputs":')
    return sock


class Requester(threading.Thread):
    def __init__(self, server, body, request_id, path="/v2/models/slow/infer"):
        super().__init__(daemon=True)
        self.server, self.body, self.request_id, self.path = server, body, request_id, path
        self.response = None
        self.error = None
        self.elapsed = None

    def run(self):
        started = time.monotonic()
        try:
            self.response = self.server.post_json(self.path, self.body,
                                                  headers={"X-Request-ID": self.request_id},
                                                  timeout=300)
        except (OSError, http.client.HTTPException) as error:
            self.error = error
        self.elapsed = time.monotonic() - started


class ThreadCountTest(harness.ServerTestCase):
    def setUp(self):
        self.server = self.start_server([
            "--model-repository", os.path.join(harness.test_data_dir(), "repo"),
            "--http-threads", str(HTTP_THREADS), "--workers", str(WORKERS),
            "--intra-op-threads", str(INTRA_OP_THREADS), "--queue-size", str(QUEUE_SIZE)])

    def thread_names(self):
        names = []
        for tid in sorted(os.listdir(f"/proc/{self.server.pid}/task"), key=int):
            try:
                with open(f"/proc/{self.server.pid}/task/{tid}/comm") as f:
                    names.append(f.read().strip())
            except OSError:
                names.append("?")
        return names

    def assertThreadCount(self, context):
        """onnxserve's own threads are named, so they are counted exactly. The rest are the main
        thread and ONNX Runtime's: its pool threads always, and its helper thread, which one run
        in about ten under parallel load did not have (ONNX Runtime 1.29.0, Linux x64). The total
        must also equal the count taken at start: traffic never adds or removes a thread."""
        names = self.thread_names()
        detail = (f"{context}: {len(names)} threads ({names}), expected {EXPECTED_THREADS} = 1 main"
                  f" + 1 repository + 1 watchdog + {HTTP_THREADS} HTTP + {INSTANCES} instances + "
                  f"{INTRA_OP_THREADS} ONNX Runtime")
        http = sum(1 for name in names if name.startswith("oxs-http-"))
        workers = names.count("oxs-worker")
        repository = names.count("oxs-repository")
        watchdog = names.count("oxs-watchdog")
        others = len(names) - http - workers - repository - watchdog
        self.assertEqual(http, HTTP_THREADS, detail)
        self.assertEqual(workers, INSTANCES, detail)
        self.assertEqual(repository, 1, detail)
        self.assertEqual(watchdog, 1, detail)
        others -= SANITIZER_THREADS
        self.assertLessEqual(others, 1 + INTRA_OP_THREADS, detail)
        self.assertGreaterEqual(others, 1 + INTRA_OP_THREADS - 1, detail)
        if others != 1 + INTRA_OP_THREADS:
            print(f"note: ONNX Runtime's helper thread is absent: {detail}", file=sys.stderr)
        if not hasattr(self, "threads_at_start"):
            self.threads_at_start = len(names)
        self.assertEqual(len(names), self.threads_at_start, detail)

    def test_thread_count_with_held_connections(self):
        self.assertThreadCount("idle after start")
        sockets = []
        try:
            for i in range(HELD_CONNECTIONS):
                sockets.append(hold_request(self.server.port, i))
            time.sleep(1.0)
            self.assertTrue(self.server.running(), "server exited while connections were held")
            self.assertThreadCount(f"{HELD_CONNECTIONS} connections holding requests")
            response = self.server.get("/v2/health/live")
            self.assertStatus(response, 200, "GET live while connections are held")
        finally:
            for sock in sockets:
                sock.close()
        response = self.server.post_json("/v2/models/scale/infer", {"inputs": [
            {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]})
        self.assertStatus(response, 200, "infer after the held connections closed")
        self.assertThreadCount("after the held connections closed")

    def wait_for_gauges(self, pending, queued, timeout=60.0):
        """Wait until the metrics show pending requests in all and queued ones in slow's queue,
        read from the metrics port instead of guessing how long the requests take to arrive."""
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            connection = http.client.HTTPConnection(harness.HOST, self.server.metrics_port,
                                                    timeout=30)
            try:
                connection.request("GET", "/metrics")
                text = connection.getresponse().read().decode()
            finally:
                connection.close()
            values = {}
            for line in text.splitlines():
                if line.startswith("onnxserve_pending_requests "):
                    values["pending"] = int(float(line.split()[1]))
                elif line.startswith('onnxserve_queued_requests{model="slow"'):
                    values["queued"] = int(float(line.split()[1]))
            seen = values
            if values.get("pending") == pending and values.get("queued") == queued:
                return
            time.sleep(0.05)
        self.fail(f"timed out waiting for {pending} pending and {queued} queued requests; "
                  f"last seen {seen}")

    def test_full_queue_rejected_at_once(self):
        self.assertThreadCount("idle after start")
        rounds = harness.calibrate_slow_rounds(self.server, 3.0)
        body = harness.slow_body(rounds)
        running = [Requester(self.server, body, f"run-{i}") for i in range(PER_MODEL)]
        for requester in running:
            requester.start()
        self.wait_for_gauges(pending=PER_MODEL, queued=0)
        queued = [Requester(self.server, body, f"queued-{i}") for i in range(QUEUE_SIZE)]
        for requester in queued:
            requester.start()
        self.wait_for_gauges(pending=PER_MODEL + QUEUE_SIZE, queued=QUEUE_SIZE)

        # The slow model's instances busy and its queue full: each extra request for it must get
        # 503 at once, while another model still serves requests.
        for i in range(3):
            started = time.monotonic()
            response = self.server.post_json("/v2/models/slow/infer", harness.slow_body(1),
                                             headers={"X-Request-ID": f"extra-{i}"})
            elapsed = time.monotonic() - started
            self.assertErrorMentions(response, 503, [], f"extra request {i} with a full queue")
            self.assertTrue(response.header("Retry-After"),
                            f"503 without Retry-After: {dict(response.headers)}")
            self.assertLess(elapsed, 0.5, f"extra request {i} waited {elapsed:.2f} s for its 503")
        response = self.server.post_json("/v2/models/scale/infer", {"inputs": [
            {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]})
        self.assertStatus(response, 200, "another model while slow's queue is full")
        self.assertThreadCount("workers busy and queue full")

        for requester in running + queued:
            requester.join(300)
            self.assertIsNone(requester.error, f"{requester.request_id}: {requester.error!r}")
            self.assertStatus(requester.response, 200, requester.request_id)
        self.assertThreadCount("after the slow requests finished")


if __name__ == "__main__":
    unittest.main(verbosity=2)
