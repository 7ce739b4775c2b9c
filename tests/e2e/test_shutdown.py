#!/usr/bin/python3
"""Graceful shutdown. On SIGTERM the server refuses new connections, responds to every request
it received in full, and exits 0. Past --exit-timeout-secs it exits 1 and logs what it abandoned.
A second signal makes it exit at once with 130."""
import http.client
import os
import signal
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

SLOW_INFER = "/v2/models/slow/infer"


class SlowClient(threading.Thread):
    """Sends one slow-model request on its own connection and keeps the response or error."""

    def __init__(self, server, body, request_id):
        super().__init__(daemon=True)
        self.server = server
        self.body = body
        self.request_id = request_id
        self.sent = threading.Event()
        self.response = None
        self.error = None
        self.finished = None  # time.monotonic() when the response or error arrived

    def run(self):
        conn = self.server.connection(timeout=120)
        try:
            conn.request("POST", SLOW_INFER, body=self.body,
                         headers={"Content-Type": "application/json",
                                  "X-Request-ID": self.request_id})
            self.sent.set()
            response = conn.getresponse()
            self.response = harness.Response(response.status, response.reason, response.headers,
                                             response.read())
        except (OSError, http.client.HTTPException) as error:
            self.error = error
        finally:
            self.finished = time.monotonic()
            self.sent.set()
            conn.close()


def connection_refused(port):
    try:
        with socket.create_connection((harness.HOST, port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


class ShutdownTest(harness.ServerTestCase):
    def start_slow_server(self, *extra):
        slow = os.path.join(harness.test_data_dir(), "slow.onnx")
        return self.start_server(["--workers", "2", *extra, slow])

    def send_slow(self, server, count, rounds, prefix):
        clients = [SlowClient(server, harness.slow_body(rounds), f"{prefix}-{i}")
                   for i in range(count)]
        for client in clients:
            client.start()
        for client in clients:
            self.assertTrue(client.sent.wait(30), f"{client.request_id}: request not sent in 30 s")
        # Give the server time to read and decode the bodies that the kernel has buffered.
        time.sleep(1.0)
        return clients

    def test_requests_in_flight_answered(self):
        server = self.start_slow_server()
        rounds = harness.calibrate_slow_rounds(server, 2.0)
        clients = self.send_slow(server, 4, rounds, "drain")

        signaled = time.monotonic()
        server.signal(signal.SIGTERM)
        time.sleep(0.3)
        self.assertTrue(connection_refused(server.port),
                        "a new connection was accepted after SIGTERM")

        shutdown = server.wait_for_log(lambda r: r.get("msg", "").startswith("shutting down"), 30)
        counted = shutdown.get("requests_in_flight") if shutdown else None
        for client in clients:
            client.join(120)
            context = f"{client.request_id} (the server counted {counted} requests in flight at SIGTERM)"
            self.assertIsNone(client.error, f"{context}: {client.error!r}")
            self.assertIsNotNone(client.response, f"{context}: no response")
            self.assertStatus(client.response, 200, context)
            output = client.response.json()["outputs"][0]
            self.assertEqual(output["shape"], [harness.SLOW_ELEMENTS], f"{client.request_id} shape")
            self.assertGreater(client.finished, signaled,
                               f"{client.request_id} finished before SIGTERM, so it was not in flight")
        code = server.wait(60)
        server.check_clean()
        self.assertEqual(code, 0, "exit code after a graceful shutdown; stderr:\n"
                         + server.stderr_text()[-3000:])
        self.assertTrue(server.find_logs(msg="shutdown complete"), "no 'shutdown complete' line")

    def test_idle_server_sigint(self):
        server = self.start_slow_server()
        conn = server.connection()
        response = harness.send_request(conn, "GET", "/v2/health/live")
        self.assertStatus(response, 200, "GET live before SIGINT")
        # The idle keep-alive connection stays open and must not hold up the exit.
        started = time.monotonic()
        server.signal(signal.SIGINT)
        code = server.wait(30)
        elapsed = time.monotonic() - started
        conn.close()
        server.check_clean()
        self.assertEqual(code, 0, "exit code after SIGINT on an idle server")
        self.assertLess(elapsed, 5.0, "an idle keep-alive connection delayed the exit")

    def test_exit_timeout_abandons(self):
        server = self.start_slow_server("--exit-timeout-secs", "1")
        rounds = harness.calibrate_slow_rounds(server, 5.0)
        clients = self.send_slow(server, 1, rounds, "abandon")
        started = time.monotonic()
        server.signal(signal.SIGTERM)
        code = server.wait(60)
        elapsed = time.monotonic() - started
        server.check_clean()
        self.assertEqual(code, 1, "exit code when the exit timeout passes; stderr:\n"
                         + server.stderr_text()[-3000:])
        self.assertLess(elapsed, 4.0, "exit took longer than --exit-timeout-secs 1 allows")
        abandoned = [r for r in server.records if "abandon" in r.get("msg", "")]
        self.assertTrue(abandoned, "no log line about abandoned requests:\n"
                        + server.stderr_text()[-3000:])
        clients[0].join(30)
        self.assertIsNone(clients[0].response, "the abandoned request got a response")

    def test_second_signal_exits_at_once(self):
        server = self.start_slow_server()
        rounds = harness.calibrate_slow_rounds(server, 5.0)
        clients = self.send_slow(server, 1, rounds, "second")
        server.signal(signal.SIGTERM)
        time.sleep(0.3)
        self.assertTrue(server.running(), "server exited before its request finished")
        started = time.monotonic()
        server.signal(signal.SIGTERM)
        code = server.wait(30)
        elapsed = time.monotonic() - started
        server.check_clean()
        self.assertEqual(code, 130, "exit code after a second signal; stderr:\n"
                         + server.stderr_text()[-3000:])
        self.assertLess(elapsed, 2.0, "second signal did not exit at once")
        clients[0].join(30)


if __name__ == "__main__":
    unittest.main(verbosity=2)
