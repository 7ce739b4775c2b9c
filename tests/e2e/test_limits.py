#!/usr/bin/python3
"""Connection and request limits.

With --max-connections N, the server keeps N connections open. One more is closed at once and
logged. Once a connection closes, a new one is served again.

Every request limit is a flag. A request past one gets 413, 414, 431 or 400 with a JSON error
that names the flag, and the server serves a normal request right after. Connections that send
their headers or body too slowly, or stay idle, are closed under their own time limits."""
import json
import os
import socket
import struct
import sys
import tempfile
import time
import unittest

import numpy as np

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


# Small limits, so that each test crosses one with a small request.
REQUEST_LIMITS = [
    "--max-uri-bytes", "256",
    "--max-headers", "10",
    "--max-header-bytes", "2KiB",
    "--max-request-bytes", "64KiB",
    "--max-json-depth", "8",
    "--max-tensor-rank", "2",
    "--max-tensor-elements", "1000",
    "--max-tensor-bytes", "4KiB",
    "--max-inputs", "1",
    "--max-outputs", "1",
    "--max-bytes-element", "16",
]


def scale_request():
    return {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}


class RequestLimitTest(harness.ServerTestCase):
    @classmethod
    def setUpClass(cls):
        cls.tempdir = tempfile.TemporaryDirectory(prefix="oxs-limits-")
        data = harness.test_data_dir()
        repo = harness.make_repository(
            os.path.join(cls.tempdir.name, "repo"),
            {name: os.path.join(data, name + ".onnx")
             for name in ("identity", "scale", "strings", "matrix")})
        cls.server = harness.Server(["--model-repository", repo] + REQUEST_LIMITS)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.server.check_clean()
        cls.tempdir.cleanup()

    def assert_limit_error(self, response, status, flag, text):
        """Check the status and the JSON error, then that a normal request is served."""
        self.assertEqual(response.status, status, response)
        error = response.json()["error"]
        self.assertIn(flag, error)
        self.assertIn(text, error)
        normal = self.server.post_json("/v2/models/scale/infer", scale_request())
        self.assertEqual(normal.status, 200, normal)
        self.assertEqual(normal.json()["outputs"][0]["data"], [3, 5, 7, 9])

    def raw_response(self, data):
        return harness.parse_raw_response(self.server.raw(data))

    def test_uri_too_long(self):
        path = "/v2/models/" + "m" * 300
        response = self.raw_response(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        self.assert_limit_error(response, 414, "--max-uri-bytes", "limit of 256 bytes")

    def test_too_many_headers(self):
        headers = "".join(f"X-Extra-{i}: {i}\r\n" for i in range(11))
        response = self.raw_response(
            f"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
        self.assert_limit_error(response, 431, "--max-headers", "more than 10 header fields")
        record = self.server.wait_for_log(
            lambda r: r.get("status") == 431 and r.get("method") == "GET", 10)
        self.assertIsNotNone(record, "the 431's log line names the method")

    def test_ten_headers_accepted(self):
        headers = "".join(f"X-Extra-{i}: {i}\r\n" for i in range(8))
        response = self.raw_response(
            f"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n"
            .encode())
        self.assertEqual(response.status, 200)

    def test_headers_too_large(self):
        response = self.raw_response(
            f"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Big: {'b' * 3000}\r\n\r\n".encode())
        self.assert_limit_error(response, 431, "--max-header-bytes", "limit of 2048 bytes")

    def test_body_too_large(self):
        body = b"{" + b" " * (70 * 1024) + b"}"
        response = self.server.request("POST", "/v2/models/scale/infer", body,
                                       {"Content-Type": "application/json"})
        self.assert_limit_error(response, 413, "--max-request-bytes", "limit of 65536 bytes")

    def test_chunked_body_too_large(self):
        chunk = b"400\r\n" + b" " * 1024 + b"\r\n"
        request = (b"POST /v2/models/scale/infer HTTP/1.1\r\nHost: x\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n" + chunk * 70 + b"0\r\n\r\n")
        response = self.raw_response(request)
        self.assert_limit_error(response, 413, "--max-request-bytes", "limit of 65536 bytes")

    def test_many_small_chunks(self):
        # 10,000 chunks of one byte each: the body is a valid request with padding spaces.
        body = json.dumps(scale_request()).encode()
        body += b" " * (10000 - len(body))
        chunks = b"".join(b"1\r\n" + body[i:i + 1] + b"\r\n" for i in range(len(body)))
        request = (b"POST /v2/models/scale/infer HTTP/1.1\r\nHost: x\r\n"
                   b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                   + chunks + b"0\r\n\r\n")
        response = self.raw_response(request)
        self.assertEqual(response.status, 200)
        self.assertEqual(json.loads(response.body)["outputs"][0]["data"], [3, 5, 7, 9])

    def test_json_too_deep(self):
        document = scale_request()
        document["parameters"] = {"nested": json.loads("[" * 8 + "1" + "]" * 8)}
        response = self.server.post_json("/v2/models/scale/infer", document)
        self.assert_limit_error(response, 400, "--max-json-depth", "limit of 8 levels")

    def test_predict_json_too_deep(self):
        body = "{\"data\": " + "[" * 9 + "1" + "]" * 9 + "}"
        response = self.server.post_json("/models/matrix/predict", body)
        self.assert_limit_error(response, 400, "--max-json-depth", "limit of 8 levels")

    def test_rank_too_high(self):
        response = self.server.post_json("/v2/models/matrix/infer", {"inputs": [
            {"name": "x", "datatype": "FP32", "shape": [1, 1, 1], "data": [1]}]})
        self.assert_limit_error(response, 400, "--max-tensor-rank",
                                "shape [1,1,1] has 3 dims, more than the limit of 2")

    def test_too_many_elements(self):
        response = self.server.post_json("/v2/models/matrix/infer", {"inputs": [
            {"name": "x", "datatype": "FP32", "shape": [1, 1001], "data": [0] * 1001}]})
        self.assert_limit_error(response, 413, "--max-tensor-elements",
                                "has 1001 elements, more than the limit of 1000")

    def test_huge_shape(self):
        # The element count of this shape overflows 64 bits; no memory is taken for it.
        for shape in ([2 ** 62, 2 ** 62], [2 ** 63 - 1, 2], [-1, 4], [2 ** 64, 1]):
            response = self.server.post_json("/v2/models/matrix/infer", {"inputs": [
                {"name": "x", "datatype": "FP32", "shape": shape, "data": []}]})
            self.assertEqual(response.status // 100, 4, (shape, response))
            self.assertIn("shape", response.json()["error"])
        normal = self.server.post_json("/v2/models/scale/infer", scale_request())
        self.assertEqual(normal.status, 200, normal)

    def test_empty_shape_served(self):
        response = self.server.post_json("/v2/models/matrix/infer", {"inputs": [
            {"name": "x", "datatype": "FP32", "shape": [0, 4], "data": []}]})
        self.assertEqual(response.status, 200, response)
        self.assertEqual(response.json()["outputs"][0]["shape"], [0, 4])

    def test_tensor_too_large(self):
        response = self.server.post_json("/v2/models/identity/infer", {
            "outputs": [{"name": "y_fp64"}],
            "inputs": [{"name": "x_fp64", "datatype": "FP64", "shape": [1, 600],
                        "data": [0] * 600}]})
        self.assert_limit_error(response, 413, "--max-tensor-bytes", "limit of 4096 bytes")

    def test_too_many_inputs(self):
        response = self.server.post_json("/v2/models/identity/infer", {"inputs": [
            {"name": "x_fp32", "datatype": "FP32", "shape": [1, 1], "data": [1]},
            {"name": "x_int64", "datatype": "INT64", "shape": [1, 1], "data": [1]}]})
        self.assert_limit_error(response, 400, "--max-inputs", "the limit set by --max-inputs is 1")

    def test_too_many_unknown_inputs(self):
        # The limit is checked when an input starts, before the names of the extra inputs.
        inputs = [{"name": "x_fp32", "datatype": "FP32", "shape": [1, 1], "data": [1]}]
        inputs += [{"name": f"extra{i}", "datatype": "FP32", "shape": [1], "data": [1]}
                   for i in range(3)]
        response = self.server.post_json("/v2/models/identity/infer", {"inputs": inputs})
        self.assert_limit_error(response, 400, "--max-inputs", "the limit set by --max-inputs is 1")

    def test_too_many_outputs(self):
        response = self.server.post_json("/v2/models/identity/infer", {
            "outputs": [{"name": "y_fp32"}, {"name": "y_int64"}],
            "inputs": [{"name": "x_fp32", "datatype": "FP32", "shape": [1, 1], "data": [1]}]})
        self.assert_limit_error(response, 400, "--max-outputs", "the limit set by --max-outputs is 1")

    def test_bytes_element_too_large(self):
        response = self.server.post_json("/v2/models/strings/infer", {"inputs": [
            {"name": "text", "datatype": "BYTES", "shape": [2], "data": ["short", "x" * 17]}]})
        self.assert_limit_error(response, 413, "--max-bytes-element",
                                "BYTES element 1 has 17 bytes, more than the limit of 16")

    def test_bytes_element_too_large_binary(self):
        body = struct.pack("<I", 3) + b"abc" + struct.pack("<I", 17) + b"y" * 17
        response = self.server.request("POST", "/v2/models/strings/infer", body,
                                       {"Inference-Header-Content-Length": "0"})
        self.assert_limit_error(response, 413, "--max-bytes-element", "has 17 bytes")

    def test_bytes_element_too_large_binary_data(self):
        # BYTES data after a JSON header reaches the tensor as it is, so the library checks it.
        data = struct.pack("<I", 2) + b"ok" + struct.pack("<I", 17) + b"z" * 17
        header = json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2],
                                         "parameters": {"binary_data_size": len(data)}}]}).encode()
        response = self.server.request("POST", "/v2/models/strings/infer", header + data,
                                       {"Inference-Header-Content-Length": str(len(header))})
        self.assert_limit_error(response, 413, "--max-bytes-element",
                                "BYTES element 1 has 17 bytes, more than the limit of 16")

    def test_bytes_element_at_limit(self):
        response = self.server.post_json("/v2/models/strings/infer", {"inputs": [
            {"name": "text", "datatype": "BYTES", "shape": [1], "data": ["x" * 16]}]})
        self.assertEqual(response.status, 200, response)
        self.assertEqual(response.json()["outputs"][0]["data"], ["x" * 16])


class TimeoutTest(harness.ServerTestCase):
    """Header and body time limits of 2 s, with a long idle limit, so each closure below comes
    from the limit under test."""

    def setUp(self):
        self.server = self.start_server([
            "--http-header-timeout-secs", "2", "--http-body-timeout-secs", "2",
            "--http-idle-timeout-secs", "600",
            os.path.join(harness.test_data_dir(), "scale.onnx")])

    def wait_closed(self, sock, trickle=None):
        """Read until the server closes sock, sending trickle one byte every 0.2 s meanwhile.
        Returns the bytes read, or fails when the connection is still open after 60 s."""
        sock.settimeout(0.2)
        deadline = time.monotonic() + 60
        data = b""
        sent = 0
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
                if not chunk:
                    return data
                data += chunk
            except socket.timeout:
                pass
            except ConnectionResetError:
                return data
            if trickle is not None and sent < len(trickle):
                try:
                    sock.sendall(trickle[sent:sent + 1])
                except (BrokenPipeError, ConnectionResetError):
                    return data
                sent += 1
        self.fail("the connection is still open after 60 s")

    def test_slow_headers_closed(self):
        with socket.create_connection((harness.HOST, self.server.port), timeout=30) as sock:
            sock.sendall(b"GET /v2/health/live HTTP/1.1\r\n")
            # Header bytes keep arriving, but only the headers' first byte starts the limit.
            data = self.wait_closed(sock, trickle=b"X-Slow: " + b"s" * 1000)
        self.assertEqual(data, b"")
        record = self.server.wait_for_log(
            lambda r: r.get("msg") == "closed a connection whose request headers did not "
                                      "arrive in time", 10)
        self.assertIsNotNone(record)
        self.assertEqual(record["limit"], "--http-header-timeout-secs")

    def test_stalled_body_closed(self):
        with socket.create_connection((harness.HOST, self.server.port), timeout=30) as sock:
            sock.sendall(b"POST /v2/models/scale/infer HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Length: 100\r\n\r\n{\"inputs\"")
            data = self.wait_closed(sock)
        self.assertEqual(data, b"")
        record = self.server.wait_for_log(
            lambda r: r.get("msg") == "closed a connection whose request body stopped arriving",
            10)
        self.assertIsNotNone(record)
        self.assertEqual(record["limit"], "--http-body-timeout-secs")

    def test_slow_body_with_progress_served(self):
        # Each body byte restarts the body limit, so a body that keeps arriving is served even
        # when it takes longer than the limit in all.
        body = json.dumps(scale_request()).encode()
        body += b" " * (40 - len(body) % 40)
        with socket.create_connection((harness.HOST, self.server.port), timeout=30) as sock:
            sock.sendall(b"POST /v2/models/scale/infer HTTP/1.1\r\nHost: x\r\n"
                         b"Connection: close\r\n"
                         + f"Content-Length: {len(body)}\r\n\r\n".encode())
            start = time.monotonic()
            for i in range(0, len(body), 4):
                sock.sendall(body[i:i + 4])
                time.sleep(0.15)
            elapsed = time.monotonic() - start
            data = harness.read_until_closed(sock, 30)
        response = harness.parse_raw_response(data)
        self.assertEqual(response.status, 200)
        if elapsed <= 2:
            self.skipTest(f"the body took {elapsed:.1f} s, not longer than the limit")


class IdleTimeoutTest(harness.ServerTestCase):
    def test_idle_connection_closed(self):
        server = self.start_server(["--http-idle-timeout-secs", "1",
                                    os.path.join(harness.test_data_dir(), "scale.onnx")])
        with socket.create_connection((harness.HOST, server.port), timeout=30) as sock:
            sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            first = harness.read_responses(sock, 1)[0]
            self.assertEqual(first.status, 200)
            # The keep-alive connection now waits for its next request and is closed.
            self.assertEqual(harness.read_until_closed(sock, 60), b"")


if __name__ == "__main__":
    unittest.main(verbosity=2)
