#!/usr/bin/python3
"""Shutdown under load. SIGTERM arrives while one model instance runs a request, its queue is
full, more requests have just been rejected with 503, some clients are half-way through a
request and others hold idle keep-alive connections. Every request the server received in full
must get its response, partial requests and idle connections must be closed without one, new
connections must be refused, and the process must exit 0 within --exit-timeout-secs. The same
runs with dynamic batching."""
import asyncio
import http.client
import json
import os
import signal
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import load_client  # noqa: E402

# Compute time of one run of the slow model, calibrated on the machine that runs the test.
RUN_SECONDS = 0.25
QUEUE_SIZE = 8
# Requests sent in full: more than one instance and its queue hold, so some get 503.
FULL_REQUESTS = 20
PARTIAL_REQUESTS = 8
IDLE_CONNECTIONS = 4
EXIT_TIMEOUT_SECS = 30
MAX_BATCH_SIZE = 4

SHUTTING_DOWN_MSG = "shutting down: no new connections or requests; finishing requests in flight"


def pending_requests(server):
    """Return onnxserve_pending_requests, the requests queued or running, from /metrics."""
    conn = http.client.HTTPConnection(harness.HOST, server.metrics_port, timeout=30)
    try:
        response = harness.send_request(conn, "GET", "/metrics")
    finally:
        conn.close()
    for line in response.body.decode().splitlines():
        if line.startswith("onnxserve_pending_requests "):
            return int(float(line.split()[1]))
    raise AssertionError("/metrics has no onnxserve_pending_requests sample")


async def read_outcome(conn, outcome):
    try:
        outcome.reply = await asyncio.wait_for(conn.read_reply(), load_client.EXCHANGE_TIMEOUT)
    except (OSError, load_client.ClosedWithoutReply, load_client.PartialReply,
            asyncio.TimeoutError) as error:
        outcome.error = error
    outcome.finished = time.monotonic()


class Scenario:
    """What the clients saw around one SIGTERM."""

    def __init__(self):
        self.full = []  # Outcome of each request sent in full before the signal
        self.signaled = None  # time.monotonic() when SIGTERM was sent
        self.shutdown_record = None  # the server's "shutting down" log line
        self.partial_results = []  # "" for each partial request closed without a response
        self.idle_results = []  # "" for each idle connection closed without a response
        self.late_connections = []  # what happened to connections opened after the signal
        self.refused = False  # a connection after the signal was refused


async def connect_after_signal(server, scenario):
    """Try new connections until one is refused. One that the kernel still accepts must be
    closed by the server without a response."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            conn = await load_client.Connection.open(server.port)
        except ConnectionRefusedError:
            scenario.refused = True
            return
        try:
            await conn.send(load_client.http_request("GET", "/v2/health/live"))
        except OSError:
            pass
        scenario.late_connections.append(await conn.wait_closed_without_reply(30))
        conn.close()
        await asyncio.sleep(0.01)


async def shutdown_scenario(server, model, rounds, batched, inputs):
    scenario = Scenario()
    loop = asyncio.get_running_loop()
    path = f"/v2/models/{model}/infer"

    idle = [await load_client.Connection.open(server.port) for _ in range(IDLE_CONNECTIONS)]
    for conn in idle:
        await conn.send(load_client.http_request("GET", "/v2/health/live"))
        reply = await asyncio.wait_for(conn.read_reply(), 30)
        if reply.status != 200:
            raise AssertionError(f"GET /v2/health/live on an idle connection: {reply!r}")

    full = [await load_client.Connection.open(server.port) for _ in range(FULL_REQUESTS)]
    partial = [await load_client.Connection.open(server.port) for _ in range(PARTIAL_REQUESTS)]
    readers = []
    for index, conn in enumerate(full):
        payload = load_client.http_request(
            "POST", path, load_client.slow_document(inputs[index], rounds, batched),
            {"X-Request-ID": f"full-{index}"})
        outcome = load_client.Outcome(index, 0.0)
        outcome.sent = time.monotonic()
        await conn.send(payload)
        scenario.full.append(outcome)
        readers.append(asyncio.ensure_future(read_outcome(conn, outcome)))
    for index, conn in enumerate(partial):
        body = load_client.slow_document(load_client.slow_input(0), rounds, batched)
        payload = load_client.http_request("POST", path, body, {"X-Request-ID": f"part-{index}"})
        # Half of them stop inside the headers, the other half inside the body.
        cut = 20 if index % 2 == 0 else len(payload) - len(body) // 2
        await conn.send(payload[:cut])

    # The server holds every full request once each is queued, running or answered.
    deadline = time.monotonic() + 60
    while True:
        answered = sum(1 for outcome in scenario.full if outcome.finished is not None)
        pending = await loop.run_in_executor(None, pending_requests, server)
        if pending + answered >= FULL_REQUESTS:
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"the server holds {pending} requests and answered {answered} "
                                 f"of {FULL_REQUESTS} after 60 s")
        await asyncio.sleep(0.01)

    scenario.signaled = time.monotonic()
    server.signal(signal.SIGTERM)
    scenario.shutdown_record = await loop.run_in_executor(
        None, lambda: server.wait_for_log(lambda r: r.get("msg") == SHUTTING_DOWN_MSG, 30))
    await connect_after_signal(server, scenario)
    scenario.partial_results = await asyncio.gather(
        *(conn.wait_closed_without_reply(30) for conn in partial))
    scenario.idle_results = await asyncio.gather(
        *(conn.wait_closed_without_reply(30) for conn in idle))
    await asyncio.gather(*readers)
    for conn in idle + full + partial:
        conn.close()
    return scenario


class ShutdownLoadTest(harness.ServerTestCase):
    def check_shutdown(self, server, model, batched):
        rounds = load_client.calibrate_rounds(server, RUN_SECONDS, model, batched)
        inputs = [load_client.slow_input(index) for index in range(FULL_REQUESTS)]
        scenario = load_client.run(shutdown_scenario(server, model, rounds, batched, inputs))

        record = scenario.shutdown_record
        self.assertIsNotNone(record, "no 'shutting down' log line after SIGTERM")
        self.assertGreaterEqual(int(record["requests_queued_or_running"]), 2,
                                f"SIGTERM came with too few requests queued or running: {record}")

        # Every request sent in full is answered: 200 when admitted, 503 when the queue was full.
        statuses = {}
        admitted = []
        after_signal = 0
        for outcome in scenario.full:
            context = f"request full-{outcome.index}"
            self.assertIsNone(outcome.error, f"{context}: no response: {outcome.error!r}")
            status = outcome.reply.status
            statuses[status] = statuses.get(status, 0) + 1
            if outcome.finished > scenario.signaled:
                after_signal += 1
            if status == 503:
                error = outcome.reply.json().get("error", "")
                self.assertIn("--queue-size", error, f"{context}: 503 other than a full queue")
                continue
            self.assertEqual(status, 200, f"{context}: {outcome.reply!r}")
            admitted.append(outcome)
        summary = f"{FULL_REQUESTS} requests: statuses {statuses}"
        self.assertEqual(sum(statuses.values()), FULL_REQUESTS, summary)
        self.assertGreaterEqual(len(admitted), QUEUE_SIZE, summary)
        self.assertGreater(statuses.get(503, 0), 0, summary)
        # Responses sent after the log line reach the client after the signal, so the client
        # counts at least as many as the server had in flight.
        self.assertGreaterEqual(after_signal, int(record["requests_in_flight"]),
                                f"{summary}; responses after SIGTERM; server log {record}")
        expected = load_client.expected_slow_output([inputs[o.index] for o in admitted], rounds)
        for outcome, values in zip(admitted, expected):
            self.assertEqual(load_client.check_slow_reply(outcome.reply, values), "",
                             f"request full-{outcome.index}")

        for index, result in enumerate(scenario.partial_results):
            self.assertEqual(result, "", f"partial request part-{index} after SIGTERM")
        for index, result in enumerate(scenario.idle_results):
            self.assertEqual(result, "", f"idle connection {index} after SIGTERM")
        for index, result in enumerate(scenario.late_connections):
            self.assertEqual(result, "", f"connection {index} opened after SIGTERM")
        self.assertTrue(scenario.refused, "no connection after SIGTERM was refused")

        code = server.wait(EXIT_TIMEOUT_SECS + 30)
        server.check_clean()
        # Past --exit-timeout-secs the server exits 1, so 0 means it finished within it.
        self.assertEqual(code, 0, "exit code after SIGTERM under load; stderr:\n"
                         + server.stderr_text()[-3000:])
        self.assertTrue(server.find_logs(msg="shutdown complete"), "no 'shutdown complete' line")
        return admitted

    def test_sigterm_under_load(self):
        slow = os.path.join(harness.test_data_dir(), "slow.onnx")
        server = self.start_server(["--workers", "1", "--queue-size", str(QUEUE_SIZE),
                                    "--exit-timeout-secs", str(EXIT_TIMEOUT_SECS), slow])
        self.check_shutdown(server, "slow", batched=False)

    def test_sigterm_under_load_batched(self):
        tempdir = tempfile.TemporaryDirectory(prefix="oxs-shutdown-")
        self.addCleanup(tempdir.cleanup)
        repo = harness.make_repository(tempdir.name, {
            "slow_batched": os.path.join(harness.test_data_dir(), "slow_batched.onnx")})
        with open(os.path.join(repo, "slow_batched", "config.json"), "w") as config:
            json.dump({"max_batch_size": MAX_BATCH_SIZE, "max_queue_size": QUEUE_SIZE,
                       "dynamic_batching": {"max_queue_delay_us": 20000},
                       "instance_group": [{"count": 1}]}, config)
        server = self.start_server(["--model-repository", repo,
                                    "--exit-timeout-secs", str(EXIT_TIMEOUT_SECS)])
        admitted = self.check_shutdown(server, "slow_batched", batched=True)
        sizes = []
        for outcome in admitted:
            request_id = f"full-{outcome.index}"
            record = server.find_logs(msg="request", request_id=request_id)
            self.assertTrue(record, f"no log line for {request_id}")
            sizes.append(int(record[0]["batch_size"]))
        self.assertTrue(any(size > 1 for size in sizes),
                        f"no admitted request ran in a batch; batch sizes {sizes}")


if __name__ == "__main__":
    unittest.main(verbosity=2)
