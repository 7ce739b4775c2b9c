#!/usr/bin/python3
"""Every malformed request gets the right 4xx with a JSON {"error"} that names the field and the
value received, and the server goes on serving: a good request follows each bad one."""
import http.client
import json
import os
import select
import socket
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

MAX_REQUEST_BYTES = 65536
SCALE_INFER = "/v2/models/scale/infer"
IDENTITY_INFER = "/v2/models/identity/infer"

IDENTITY_TYPES = [("bool", "BOOL"), ("uint8", "UINT8"), ("uint16", "UINT16"), ("uint32", "UINT32"),
                  ("uint64", "UINT64"), ("int8", "INT8"), ("int16", "INT16"), ("int32", "INT32"),
                  ("int64", "INT64"), ("fp32", "FP32"), ("fp64", "FP64"), ("fp16", "FP16"),
                  ("bf16", "BF16")]


def scale_input(**changes):
    entry = {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1.0, 2.0, 3.0, 4.0]}
    entry.update(changes)
    return entry


def scale_body(**changes):
    return {"inputs": [scale_input(**changes)]}


def identity_body(suffix, value):
    """Identity inputs of shape [1, 1], all zero except x_SUFFIX, which gets value."""
    inputs = []
    for name, datatype in IDENTITY_TYPES:
        data = [False] if datatype == "BOOL" else [0]
        if name == suffix:
            data = [value]
        inputs.append({"name": "x_" + name, "shape": [1, 1], "datatype": datatype, "data": data})
    return {"inputs": inputs}


# (label, path, body: dict or raw str, expected status, phrases the error must contain)
JSON_CASES = [
    ("invalid JSON", SCALE_INFER, '{"inputs": [', 400, ["JSON"]),
    ("JSON with trailing garbage", SCALE_INFER, '{"inputs": []} xyz', 400, ["JSON"]),
    ("empty body", SCALE_INFER, "", 400, []),
    ("body is an array", SCALE_INFER, "[1, 2]", 400, []),
    ("missing inputs", SCALE_INFER, {"id": "a"}, 400, ["inputs"]),
    ("inputs is an object", SCALE_INFER, {"inputs": {"name": "x"}}, 400, ["inputs"]),
    ("input is a number", SCALE_INFER, {"inputs": [5]}, 400, ["inputs"]),
    ("name is a number", SCALE_INFER, {"inputs": [scale_input(name=7)]}, 400, ["name"]),
    ("shape is a string", SCALE_INFER, scale_body(shape="1x4"), 400, ["shape", "1x4"]),
    ("shape element is a string", SCALE_INFER, scale_body(shape=[1, "4"]), 400, ["shape"]),
    ("datatype is a number", SCALE_INFER, scale_body(datatype=5), 400, ["datatype"]),
    ("data is a string", SCALE_INFER, scale_body(data="abc"), 400, ["data", "abc"]),
    ("data element is a string", SCALE_INFER, scale_body(data=[1.0, "two", 3.0, 4.0]), 400,
     ["x", "two"]),
    ("data element is null", SCALE_INFER, scale_body(data=[1.0, None, 3.0, 4.0]), 400, ["x"]),
    ("data element is an object", SCALE_INFER, scale_body(data=[1.0, {"a": 1}, 3.0, 4.0]), 400,
     ["x"]),
    ("id is a number", SCALE_INFER, {"id": 5, "inputs": [scale_input()]}, 400, ["id"]),
    ("outputs is a string", SCALE_INFER, {"inputs": [scale_input()], "outputs": "y"}, 400,
     ["outputs"]),
    ("missing input", IDENTITY_INFER,
     {"inputs": identity_body("int8", 1)["inputs"][1:]}, 400, ["x_bool"]),
    ("no inputs for scale", SCALE_INFER, {"inputs": []}, 400, ["x"]),
    ("unknown input", SCALE_INFER, scale_body(name="z"), 400, ["z"]),
    ("duplicate input", SCALE_INFER, {"inputs": [scale_input(), scale_input()]}, 400,
     ["x", ("duplicate", "more than once")]),
    ("input without name", SCALE_INFER,
     {"inputs": [{"shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}, 400, ["name"]),
    ("input without shape", SCALE_INFER,
     {"inputs": [{"name": "x", "datatype": "FP32", "data": [1, 2, 3, 4]}]}, 400, ["shape"]),
    ("input without datatype", SCALE_INFER,
     {"inputs": [{"name": "x", "shape": [1, 4], "data": [1, 2, 3, 4]}]}, 400, ["datatype"]),
    ("input without data", SCALE_INFER,
     {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32"}]}, 400, ["data"]),
    ("unknown output", SCALE_INFER, {"inputs": [scale_input()], "outputs": [{"name": "nope"}]},
     400, ["nope"]),
    ("too few elements", SCALE_INFER, scale_body(shape=[2, 4]), 400, ["x", "8", "4"]),
    ("too many elements", SCALE_INFER, scale_body(data=[1.0] * 5), 400, ["x", "4"]),
    ("nesting does not match shape", SCALE_INFER,
     scale_body(shape=[2, 4], data=[[1, 2, 3, 4], [1, 2, 3]]), 400, ["x"]),
    ("nesting deeper than shape", SCALE_INFER, scale_body(data=[[[1, 2, 3, 4]]]), 400, ["x"]),
    ("wrong rank", SCALE_INFER, scale_body(shape=[4]), 400, ["x", "[4]"]),
    ("wrong static dim", SCALE_INFER, scale_body(shape=[1, 5], data=[1.0] * 5), 400, ["x", "5"]),
    ("negative dim", SCALE_INFER, scale_body(shape=[-1, 4]), 400, ["x", "-1"]),
    ("dim beyond int64", SCALE_INFER, scale_body(shape=[99999999999999999999, 4]), 400,
     ["99999999999999999999"]),
    ("element count overflows", SCALE_INFER,
     scale_body(shape=[4611686018427387904, 4611686018427387904]), 400,
     ["shape", "4611686018427387904"]),
    ("huge element count", SCALE_INFER, scale_body(shape=[1000000000000, 4]), (400, 413),
     ["x", "1000000000000"]),
    ("fractional dim", SCALE_INFER, scale_body(shape=[1.5, 4]), 400, ["1.5"]),
    ("rank over 16", SCALE_INFER, scale_body(shape=[1] * 17, data=[1.0]), 400, ["shape", "16"]),
    ("datatype does not match model", SCALE_INFER, scale_body(datatype="INT64", data=[1, 2, 3, 4]),
     400, ["x", "INT64", "FP32"]),
    ("BYTES where the model expects FP32", SCALE_INFER, scale_body(datatype="BYTES"), 400,
     ["x", "BYTES", "FP32"]),
    ("FP16 where the model expects FP32", SCALE_INFER, scale_body(datatype="FP16"), 400,
     ["x", "FP16", "FP32"]),
    ("unknown datatype", SCALE_INFER, scale_body(datatype="FLOAT32"), 400, ["FLOAT32"]),
    ("int8 above range", IDENTITY_INFER, identity_body("int8", 128), 400, ["x_int8", "128"]),
    ("int8 below range", IDENTITY_INFER, identity_body("int8", -129), 400, ["x_int8", "-129"]),
    ("uint8 negative", IDENTITY_INFER, identity_body("uint8", -1), 400, ["x_uint8", "-1"]),
    ("uint8 above range", IDENTITY_INFER, identity_body("uint8", 256), 400, ["x_uint8", "256"]),
    ("int16 above range", IDENTITY_INFER, identity_body("int16", 32768), 400, ["x_int16", "32768"]),
    ("int32 above range", IDENTITY_INFER, identity_body("int32", 2**31), 400,
     ["x_int32", str(2**31)]),
    ("int64 above range", IDENTITY_INFER, identity_body("int64", 2**63), 400,
     ["x_int64", str(2**63)]),
    ("int64 below range", IDENTITY_INFER, identity_body("int64", -2**63 - 1), 400,
     ["x_int64", str(-2**63 - 1)]),
    ("int32 given a fraction", IDENTITY_INFER, identity_body("int32", 1.5), 400, ["x_int32", "1.5"]),
    ("bool given a number", IDENTITY_INFER, identity_body("bool", 2), 400, ["x_bool", "2"]),
    ("fp32 given a bool", IDENTITY_INFER, identity_body("fp32", True), 400, ["x_fp32"]),
    ("fp32 above range", IDENTITY_INFER, identity_body("fp32", 1e39), 400,
     ["x_fp32", "1e+39", "index 0", "FP32"]),
    ("fp16 above range", IDENTITY_INFER, identity_body("fp16", 70000), 400,
     ["x_fp16", "70000", "index 0", "FP16", "65504"]),
    ("fp16 at the rounding limit", IDENTITY_INFER, identity_body("fp16", -65520), 400,
     ["x_fp16", "-65520", "FP16"]),
    ("bf16 above range", IDENTITY_INFER, identity_body("bf16", 1e39), 400,
     ["x_bf16", "1e+39", "index 0", "BF16"]),
    ("fp16 given a lowercase nan", IDENTITY_INFER, identity_body("fp16", "nan"), 400,
     ["x_fp16", '"nan"', "NaN"]),
    ("int32 given the string NaN", IDENTITY_INFER, identity_body("int32", "NaN"), 400,
     ["x_int32", '"NaN"', "INT32"]),
    ("unknown model", "/v2/models/no_such_model/infer", scale_body(), 404, ["no_such_model"]),
    ("unknown version", "/v2/models/scale/versions/7/infer", scale_body(), 404, ["7"]),
    ("version not a number", "/v2/models/scale/versions/abc/infer", scale_body(), 400, ["abc"]),
    ("predict without data", "/models/scale/predict", {"shape": [1, 4]}, 400, ["data"]),
    ("predict data is a string", "/models/scale/predict", {"data": "abc"}, 400, ["data"]),
    ("predict on unknown model", "/models/no_such_model/predict", {"data": [[1, 2, 3, 4]]}, 404,
     ["no_such_model"]),
]


class BadInputTest(harness.ServerTestCase):
    @classmethod
    def setUpClass(cls):
        cls.tempdir = tempfile.TemporaryDirectory(prefix="oxs-e2e-bad-")
        data = harness.test_data_dir()
        cls.repository = harness.make_repository(
            os.path.join(cls.tempdir.name, "repo"),
            {"scale": os.path.join(data, "scale.onnx"),
             "identity": os.path.join(data, "identity.onnx")})

    @classmethod
    def tearDownClass(cls):
        cls.tempdir.cleanup()

    def setUp(self):
        self.server = self.start_new_server()

    def start_new_server(self):
        return self.start_server(["--model-repository", self.repository,
                                  "--max-request-bytes", str(MAX_REQUEST_BYTES),
                                  "--default-model", "scale"])

    def replace_dead_server(self):
        """Start a new server when the last case killed the old one, so later cases still run."""
        if not self.server.running():
            self.server = self.start_new_server()

    def check_still_serving(self, after):
        time.sleep(0.05)
        if not self.server.running():
            code = self.server.wait()
            self.fail(f"server exited with code {code} after {after}; stderr ends with:\n"
                      + self.server.stderr_text()[-1500:])
        response = self.server.post_json(SCALE_INFER, scale_body())
        self.assertStatus(response, 200, f"good request after {after}")
        output = response.json()["outputs"][0]
        self.assertEqual(list(harness.flatten(output["data"])), [3.0, 5.0, 7.0, 9.0],
                         f"scale output after {after}")

    def raw_response(self, raw, label):
        """Send raw bytes on a new connection and read one response."""
        with socket.create_connection((harness.HOST, self.server.port), timeout=10) as sock:
            sock.sendall(raw)
            try:
                return harness.read_responses(sock, 1, timeout=10)[0]
            except (OSError, http.client.HTTPException) as error:
                self.fail(f"{label}: no HTTP response ({error!r})")

    def test_json_cases(self):
        for label, path, body, status, phrases in JSON_CASES:
            self.replace_dead_server()
            with self.subTest(label):
                payload = body if isinstance(body, str) else json.dumps(body)
                response = self.server.post_json(path, payload.encode())
                self.assertErrorMentions(response, status, phrases, f"{label} ({payload[:200]})")
                self.check_still_serving(label)

    def test_deep_nesting(self):
        depth = 30000
        payload = '{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": ' \
            + "[" * depth + "]" * depth + "}]}"
        self.assertLess(len(payload), MAX_REQUEST_BYTES, "test setup: payload over the limit")
        response = self.server.post_json(SCALE_INFER, payload.encode())
        self.assertErrorMentions(response, 400, ["x"], f"data nested {depth} deep")
        self.check_still_serving("deeply nested data")

    def test_body_over_limit_answered_from_headers(self):
        """Content-Length over --max-request-bytes gets 413 without the body being sent."""
        head = (f"POST {SCALE_INFER} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Content-Type: application/json\r\nContent-Length: {MAX_REQUEST_BYTES * 100}\r\n\r\n")
        with socket.create_connection((harness.HOST, self.server.port), timeout=10) as sock:
            sock.sendall(head.encode())
            started = time.monotonic()
            try:
                response = harness.read_responses(sock, 1, timeout=10)[0]
            except (OSError, http.client.HTTPException) as error:
                self.fail(f"no 413 within 10 s to headers with a large Content-Length: {error!r}")
            elapsed = time.monotonic() - started
        self.assertErrorMentions(response, 413, [str(MAX_REQUEST_BYTES)], "body over limit")
        self.assertLess(elapsed, 5.0, "413 took too long, as if the server waited for the body")
        self.check_still_serving("413")

    def test_body_over_limit_chunked(self):
        """A chunked body that grows past --max-request-bytes gets 413 too."""
        chunk = b"[" + b"1," * 4000 + b"1]"
        head = (f"POST {SCALE_INFER} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Transfer-Encoding: chunked\r\n\r\n").encode()
        with socket.create_connection((harness.HOST, self.server.port), timeout=10) as sock:
            sock.sendall(head)
            sent = 0
            # Send chunks until the server responds or twice the limit has been sent.
            while sent <= MAX_REQUEST_BYTES * 2:
                readable, _, _ = select.select([sock], [], [], 0.01)
                if readable:
                    break
                try:
                    sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                except (BrokenPipeError, ConnectionResetError):
                    break
                sent += len(chunk)
            response = harness.read_responses(sock, 1, timeout=10)[0]
        self.assertErrorMentions(response, 413, [], "chunked body over limit")
        self.check_still_serving("chunked 413")

    def test_malformed_http(self):
        cases = [
            ("garbage request line", b"GARBAGE\r\n\r\n"),
            ("bad Content-Length", b"POST /v2/models/scale/infer HTTP/1.1\r\nHost: a\r\n"
                                   b"Content-Length: abc\r\n\r\n"),
            ("bad chunk size", b"POST /v2/models/scale/infer HTTP/1.1\r\nHost: a\r\n"
                               b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"),
            ("HTTP version 9.9", b"GET /v2 HTTP/9.9x\r\nHost: a\r\n\r\n"),
        ]
        for label, raw in cases:
            self.replace_dead_server()
            with self.subTest(label):
                response = self.raw_response(raw, label)
                self.assertStatus(response, 400, label)
                self.assertIn("error", response.json(), f"{label}: body {response.body!r}")
                self.check_still_serving(label)

    def test_invalid_request_id(self):
        # http-parser may reject a control character itself, so that error need not name the header.
        cases = [
            ("too long", b"a" * 129, ["X-Request-ID"]),
            ("control character", b"abc\x01def", []),
            ("non-ASCII", "caf\u00e9".encode(), ["X-Request-ID"]),
        ]
        for label, value, phrases in cases:
            self.replace_dead_server()
            with self.subTest(label):
                raw = b"GET /v2/health/live HTTP/1.1\r\nHost: a\r\nX-Request-ID: " + value + \
                    b"\r\nConnection: close\r\n\r\n"
                response = self.raw_response(raw, f"X-Request-ID {label}")
                self.assertErrorMentions(response, 400, phrases, f"X-Request-ID {label}")
                self.check_still_serving(f"X-Request-ID {label}")
        response = self.server.get("/v2/health/live", headers={"X-Request-ID": "b" * 128})
        self.assertStatus(response, 200, "X-Request-ID of 128 bytes")

    def test_unknown_routes(self):
        for method, path, status in [("GET", "/nope", 404), ("GET", "/v2/models/scale/nope", 404),
                                     ("POST", "/v2/nope", 404), ("GET", "/v2/models/no_such_model", 404),
                                     ("GET", "/v2/models/scale/versions/7", 404),
                                     ("GET", "/v2/models/no_such_model/ready", 404)]:
            with self.subTest(f"{method} {path}"):
                response = self.server.request(method, path, body=b"" if method == "POST" else None)
                self.assertErrorMentions(response, status, [], f"{method} {path}")
                self.check_still_serving(f"{method} {path}")

    def test_wrong_method(self):
        response = self.server.get(SCALE_INFER)
        self.assertTrue(400 <= response.status < 500, f"GET {SCALE_INFER}: {response}")
        self.assertIn("error", response.json(), f"GET {SCALE_INFER}: {response}")
        self.check_still_serving(f"GET {SCALE_INFER}")

    def test_error_logged_with_request_id(self):
        response = self.server.post_json(SCALE_INFER, scale_body(name="z"),
                                         headers={"X-Request-ID": "bad-input-log-1"})
        self.assertStatus(response, 400, "unknown input")
        record = self.server.wait_for_log(lambda r: r.get("request_id") == "bad-input-log-1"
                                          and r.get("status") == 400, timeout=5)
        self.assertIsNotNone(record, "no request log line with status 400 for bad-input-log-1:\n"
                             + self.server.stderr_text()[-3000:])

    def test_many_bad_requests_then_good(self):
        for i in range(200):
            response = self.server.post_json(SCALE_INFER, b'{"inputs": [{"name": "x", "shape": [1,')
            self.assertStatus(response, 400, f"bad request {i}")
        self.check_still_serving("200 bad requests")


if __name__ == "__main__":
    unittest.main(verbosity=2)
