#!/usr/bin/python3
"""Connection limits.

With --max-connections N, the server keeps N connections open. One more is closed at once and
logged. Once a connection closes, a new one is served again."""
import os
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

MAX_CONNECTIONS = 5


class ConnectionLimitTest(harness.ServerTestCase):
    def test_connection_past_limit_closed(self):
        server = self.start_server(["--max-connections", str(MAX_CONNECTIONS),
                                    os.path.join(harness.test_data_dir(), "scale.onnx")])
        held = [socket.create_connection((harness.HOST, server.port), timeout=30)
                for _ in range(MAX_CONNECTIONS)]
        try:
            # Each held connection is served, so the server has accepted all of them.
            for sock in held:
                sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
                self.assertIn(b"200 OK", sock.recv(4096), "a held connection is served")
            extra = socket.create_connection((harness.HOST, server.port), timeout=30)
            try:
                extra.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
                try:
                    data = extra.recv(4096)
                except ConnectionResetError:
                    data = b""
                self.assertEqual(data, b"", "a connection past --max-connections is closed")
            finally:
                extra.close()
            self.assertIsNotNone(
                server.wait_for_log(lambda r: r.get("msg") ==
                                    "connection closed: --max-connections reached", 10),
                "a log line for the closed connection")
        finally:
            for sock in held:
                sock.close()
        # Once the held connections have closed, new ones are served.
        deadline = time.monotonic() + 30
        while True:
            try:
                if server.get("/v2/health/live").status == 200:
                    break
            except (ConnectionError, OSError):
                pass
            if time.monotonic() > deadline:
                self.fail("no request served after the held connections closed")
            time.sleep(0.05)


if __name__ == "__main__":
    unittest.main(verbosity=2)
