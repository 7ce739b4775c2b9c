#!/usr/bin/python3
"""The KServe v2 REST endpoints, /healthz, request ids, request logs, keep-alive, pipelining,
chunked bodies and the command line."""
import json
import os
import re
import socket
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

SCALE_INFER = "/v2/models/scale/infer"
SCALE_BODY = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                          "data": [1.0, 2.0, 3.0, 4.0]}]}
SCALE_OUTPUT = [3.0, 5.0, 7.0, 9.0]
RFC3339_MICROSECONDS = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}(Z|[+-]\d{2}:\d{2})$")
REQUEST_LOG_FIELDS = ["request_id", "method", "path", "model", "status", "latency_us", "queue_us",
                      "compute_us", "bytes_in", "bytes_out"]

# Flags the issue requires, each with the default --help must show (None: no default).
HELP_FLAGS = {
    "--model-repository": None,
    "--host": "127.0.0.1",
    "--http-port": "8000",
    "--http-threads": None,
    "--workers": None,
    "--queue-size": None,
    "--intra-op-threads": None,
    "--max-request-bytes": None,
    "--default-model": None,
    "--log-level": "info",
    "--log-format": "json",
    "--exit-timeout-secs": "30",
    "--help": None,
    "--version": None,
}


def http_request(method, path, body=b"", request_id=None, extra_headers=""):
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if request_id is not None:
        head += f"X-Request-ID: {request_id}\r\n"
    if method == "POST":
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    head += extra_headers + "\r\n"
    return head.encode() + body


def healthz_models(document):
    """Normalize /healthz's models to {name: {"state": ..., "reason": ...}}, accepting a list of
    objects with "name" or an object keyed by name."""
    models = document.get("models")
    result = {}
    if isinstance(models, list):
        for entry in models:
            result[entry["name"]] = entry
    elif isinstance(models, dict):
        for name, entry in models.items():
            result[name] = entry if isinstance(entry, dict) else {"state": entry}
    return result


class ProtocolTest(harness.ServerTestCase):
    def setUp(self):
        self.repository = os.path.join(harness.test_data_dir(), "repo")
        self.server = self.start_server(["--model-repository", self.repository,
                                         "--default-model", "scale"])

    def check_scale_response(self, response, context):
        self.assertStatus(response, 200, context)
        body = response.json()
        self.assertEqual(list(harness.flatten(body["outputs"][0]["data"])), SCALE_OUTPUT, context)

    def test_server_metadata(self):
        response = self.server.get("/v2")
        self.assertStatus(response, 200, "GET /v2")
        body = response.json()
        self.assertEqual(body.get("name"), "onnxserve", f"GET /v2 name in {body}")
        self.assertEqual(body.get("version"), "0.1.0", f"GET /v2 version in {body}")
        self.assertIsInstance(body.get("extensions"), list, f"GET /v2 extensions in {body}")

    def test_health_live(self):
        response = self.server.get("/v2/health/live")
        self.assertStatus(response, 200, "GET /v2/health/live")
        response.json()

    def test_health_ready_answers_json(self):
        # With the broken model in the repository, the server may report ready or not ready,
        # as long as the status code carries the result.
        response = self.server.get("/v2/health/ready")
        self.assertIn(response.status, (200, 503), f"GET /v2/health/ready: {response}")
        response.json()

    def test_model_metadata(self):
        for path in ("/v2/models/scale", "/v2/models/scale/versions/1"):
            with self.subTest(path):
                response = self.server.get(path)
                self.assertStatus(response, 200, f"GET {path}")
                body = response.json()
                self.assertEqual(body.get("name"), "scale", f"{path} name")
                self.assertIn("1", [str(v) for v in body.get("versions", [])], f"{path} versions")
                self.assertEqual(body.get("inputs"),
                                 [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
                                 f"{path} inputs")
                self.assertEqual(body.get("outputs"),
                                 [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}],
                                 f"{path} outputs")
                text = json.dumps(body.get("parameters"))
                self.assertIn("onnxserve-tests", text, f"{path} parameters lack the producer")
                self.assertIn("13", text, f"{path} parameters lack opset 13")

    def test_identity_metadata_has_custom_properties(self):
        response = self.server.get("/v2/models/identity")
        self.assertStatus(response, 200, "GET /v2/models/identity")
        body = response.json()
        self.assertEqual(len(body["inputs"]), 13, "identity inputs")
        datatypes = {entry["name"]: entry["datatype"] for entry in body["inputs"] + body["outputs"]}
        for name, datatype in (("x_fp16", "FP16"), ("y_fp16", "FP16"), ("x_bf16", "BF16"),
                               ("y_bf16", "BF16")):
            self.assertEqual(datatypes.get(name), datatype, f"identity metadata for {name}")
        self.assertIn("datatype round trips", json.dumps(body.get("parameters")),
                      "identity parameters lack the custom metadata property")

    def test_model_ready(self):
        for path in ("/v2/models/scale/ready", "/v2/models/scale/versions/1/ready"):
            with self.subTest(path):
                self.assertStatus(self.server.get(path), 200, f"GET {path}")

    def test_broken_model_unavailable(self):
        response = self.server.get("/healthz")
        self.assertStatus(response, 200, "GET /healthz")
        models = healthz_models(response.json())
        self.assertIn("broken", models, f"/healthz models {models}")
        broken = models["broken"]
        self.assertEqual(broken.get("state"), "UNAVAILABLE", f"broken model entry {broken}")
        reason = broken.get("reason")
        self.assertIsInstance(reason, str, f"broken model entry {broken} has no reason")
        self.assertTrue(reason, f"broken model entry {broken} has an empty reason")
        self.assertNotIn(self.repository, reason, "reason shows a filesystem path")
        self.assertNotIn(harness.test_data_dir(), reason, "reason shows a filesystem path")
        for name in ("identity", "scale", "slow"):
            self.assertEqual(models.get(name, {}).get("state"), "READY", f"/healthz {name} {models}")

        ready = self.server.get("/v2/models/broken/ready")
        self.assertNotEqual(ready.status, 200, f"GET /v2/models/broken/ready: {ready}")
        infer = self.server.post_json("/v2/models/broken/infer", SCALE_BODY)
        self.assertTrue(400 <= infer.status < 600 and infer.status != 200,
                        f"infer on broken model: {infer}")
        self.assertIn("error", infer.json(), f"infer on broken model: {infer}")
        self.check_scale_response(self.server.post_json(SCALE_INFER, SCALE_BODY),
                                  "scale after the broken model")
        self.assertTrue(self.server.find_logs(model="broken") or
                        any("broken" in line for line in self.server.lines),
                        "no log line about the broken model")

    def test_healthz_fields(self):
        response = self.server.get("/healthz")
        self.assertStatus(response, 200, "GET /healthz")
        body = response.json()
        self.assertEqual(body.get("version"), "0.1.0", f"/healthz version in {body}")
        uptime = [k for k in body if k.startswith("uptime")]
        self.assertTrue(uptime, f"/healthz has no uptime field: {body}")
        self.assertIsInstance(body[uptime[0]], (int, float), f"/healthz {uptime[0]}")
        self.assertIn("gpu_memory", body, f"/healthz has no gpu_memory: {body}")
        self.assertIsNone(body["gpu_memory"], "gpu_memory without a GPU")

    def test_request_id_echoed(self):
        response = self.server.post_json(SCALE_INFER, SCALE_BODY,
                                         headers={"X-Request-ID": "proto-echo-1"})
        self.check_scale_response(response, "infer with X-Request-ID")
        self.assertEqual(response.header("X-Request-ID"), "proto-echo-1", "X-Request-ID header")
        record = self.server.wait_for_log(lambda r: r.get("request_id") == "proto-echo-1", 5)
        self.assertIsNotNone(record, "no log line with request_id proto-echo-1")

    def test_request_id_generated(self):
        first = self.server.get("/v2/health/live")
        second = self.server.get("/v2/health/live")
        for response in (first, second):
            self.assertTrue(response.header("X-Request-ID"),
                            f"no generated X-Request-ID in {dict(response.headers)}")
        self.assertNotEqual(first.header("X-Request-ID"), second.header("X-Request-ID"),
                            "two requests got the same generated id")

    def test_request_id_in_predict_body(self):
        response = self.server.post_json("/predict", {"data": [[1, 2, 3, 4]]},
                                         headers={"X-Request-ID": "proto-predict-1"})
        self.assertStatus(response, 200, "POST /predict")
        body = response.json()
        self.assertEqual(body.get("request_id"), "proto-predict-1", f"/predict body {body}")
        self.assertEqual(body.get("model"), "scale", f"/predict body {body}")

    def test_predict_infers_leading_dim(self):
        response = self.server.post_json("/predict", {"data": [1, 2, 3, 4, 5, 6, 7, 8]})
        self.assertStatus(response, 200, "POST /predict with flat data")
        body = response.json()
        self.assertEqual(body.get("shape"), [2, 4], f"/predict body {body}")
        self.assertEqual(list(harness.flatten(body["output"])),
                         [3.0, 5.0, 7.0, 9.0, 11.0, 13.0, 15.0, 17.0], "/predict output")
        response = self.server.post_json("/predict", {"data": [1, 2, 3, 4, 5]})
        self.assertErrorMentions(response, 400, ["5", "4"], "/predict with 5 elements for [-1,4]")

    def test_request_log_fields(self):
        body = json.dumps(SCALE_BODY).encode()
        response = self.server.post_json(SCALE_INFER, body, headers={"X-Request-ID": "proto-log-1"})
        self.check_scale_response(response, "infer for the request log")
        record = self.server.wait_for_log(
            lambda r: r.get("request_id") == "proto-log-1" and "status" in r, 5)
        self.assertIsNotNone(record, "no request log line for proto-log-1:\n"
                             + self.server.stderr_text()[-3000:])
        for field in REQUEST_LOG_FIELDS:
            self.assertIn(field, record, f"request log line {record} lacks {field}")
        self.assertEqual(record["method"], "POST", f"method in {record}")
        self.assertEqual(record["path"], SCALE_INFER, f"path in {record}")
        self.assertEqual(record["model"], "scale", f"model in {record}")
        self.assertEqual(record["status"], 200, f"status in {record}")
        self.assertEqual(record["level"], "info", f"level in {record}")
        self.assertRegex(record["ts"], RFC3339_MICROSECONDS, f"ts in {record}")
        for field in ("latency_us", "queue_us", "compute_us", "bytes_in", "bytes_out"):
            self.assertIsInstance(record[field], int, f"{field} in {record}")
            self.assertGreaterEqual(record[field], 0, f"{field} in {record}")
        self.assertGreater(record["compute_us"], 0, f"compute_us in {record}")
        self.assertGreaterEqual(record["latency_us"], record["compute_us"], f"latency in {record}")
        self.assertGreaterEqual(record["bytes_in"], len(body), f"bytes_in in {record}")
        self.assertGreaterEqual(record["bytes_out"], len(response.body), f"bytes_out in {record}")
        self.assertNotIn("error", record, f"a 200 request log line carries an error: {record}")

    def test_request_log_failure_reason(self):
        body = json.dumps({"inputs": [{"name": "x", "shape": [1, 5], "datatype": "FP32",
                                       "data": [1, 2, 3, 4, 5]}]}).encode()
        response = self.server.post_json(SCALE_INFER, body, headers={"X-Request-ID": "proto-log-2"})
        self.assertEqual(response.status, 400, f"infer with a wrong dim: {response}")
        record = self.server.wait_for_log(
            lambda r: r.get("request_id") == "proto-log-2" and r.get("msg") == "request", 5)
        self.assertIsNotNone(record, "no request log line for proto-log-2")
        self.assertEqual(record["level"], "info", f"level in {record}")
        self.assertIn("the model expects 4", record.get("error", ""), f"error in {record}")

    def test_log_escapes_client_text(self):
        path = '/v2/models/a%22b%0Ac/infer'
        response = self.server.request("POST", path, body=b"{}")
        self.assertEqual(response.status, 404, f"POST {path}: {response}")
        record = self.server.wait_for_log(lambda r: r.get("status") == 404, 5)
        self.assertIsNotNone(record, "no request log line for the 404")
        for line in self.server.lines:
            if line.strip():
                self.assertTrue(line.startswith("{") and line.endswith("}"),
                                f"log line is not one JSON object: {line!r}")
                json.loads(line)

    def test_startup_log(self):
        record = self.server.find_logs(msg="onnxserve starting")
        self.assertTrue(record, "no startup log line")
        for field in ("version", "onnxruntime_version", "cores"):
            self.assertIn(field, record[0], f"startup log line {record[0]} lacks {field}")
        for line in self.server.records:
            self.assertRegex(line.get("ts", ""), RFC3339_MICROSECONDS, f"ts in {line}")
            self.assertIn(line.get("level"), ("error", "warn", "info", "debug"), f"level in {line}")

    def test_keep_alive(self):
        conn = self.server.connection()
        try:
            sockets = []
            for i in range(5):
                response = harness.send_request(conn, "POST", SCALE_INFER,
                                                json.dumps(SCALE_BODY).encode(),
                                                {"Content-Type": "application/json"})
                self.check_scale_response(response, f"request {i} on one connection")
                sockets.append(conn.sock)
                response = harness.send_request(conn, "GET", "/v2/health/live")
                self.assertStatus(response, 200, f"GET live {i} on one connection")
                sockets.append(conn.sock)
            self.assertTrue(all(s is sockets[0] and s is not None for s in sockets),
                            "the server closed a keep-alive connection between requests")
        finally:
            conn.close()

    def test_pipelined_requests(self):
        body = json.dumps(SCALE_BODY).encode()
        slow = json.dumps({"inputs": [
            {"name": "x", "shape": [100000], "datatype": "FP32", "data": [0.5] * 100000},
            {"name": "n", "shape": [1], "datatype": "INT64", "data": [20]}]}).encode()
        requests = [
            http_request("POST", "/v2/models/slow/infer", slow, "pipe-0"),
            http_request("GET", "/v2/health/live", request_id="pipe-1"),
            http_request("POST", SCALE_INFER, body, "pipe-2"),
            http_request("GET", "/v2/models/scale", request_id="pipe-3"),
            http_request("POST", SCALE_INFER, b'{"inputs": [', "pipe-4"),
            http_request("GET", "/v2/health/live", request_id="pipe-5"),
        ]
        with socket.create_connection((harness.HOST, self.server.port), timeout=60) as sock:
            sock.sendall(b"".join(requests))
            responses = harness.read_responses(sock, len(requests), timeout=60)
        ids = [r.header("X-Request-ID") for r in responses]
        self.assertEqual(ids, [f"pipe-{i}" for i in range(len(requests))], "pipelined answer order")
        self.assertEqual([r.status for r in responses], [200, 200, 200, 200, 400, 200],
                         f"pipelined statuses {responses}")
        self.check_scale_response(responses[2], "pipelined infer")

    def test_chunked_request_body(self):
        body = json.dumps(SCALE_BODY).encode()
        pieces = [body[i:i + 7] for i in range(0, len(body), 7)]
        chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
        head = (f"POST {SCALE_INFER} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                "\r\nTransfer-Encoding: chunked\r\nX-Request-ID: chunked-1\r\n\r\n").encode()
        with socket.create_connection((harness.HOST, self.server.port), timeout=30) as sock:
            sock.sendall(head)
            for piece in [chunked[i:i + 50] for i in range(0, len(chunked), 50)]:
                sock.sendall(piece)
            response = harness.read_responses(sock, 1, timeout=30)[0]
        self.check_scale_response(response, "chunked request body")
        self.assertEqual(response.header("X-Request-ID"), "chunked-1", "chunked X-Request-ID")

    def test_connection_close_honored(self):
        raw = http_request("GET", "/v2/health/live", extra_headers="Connection: close\r\n")
        data = self.server.raw(raw, timeout=10)
        response = harness.parse_raw_response(data)
        self.assertStatus(response, 200, "GET with Connection: close")

    def test_http_1_0(self):
        data = self.server.raw(b"GET /v2/health/live HTTP/1.0\r\n\r\n", timeout=10)
        self.assertTrue(data, "no answer to an HTTP/1.0 request")
        response = harness.parse_raw_response(data)
        self.assertStatus(response, 200, "HTTP/1.0 GET")


class CommandLineTest(unittest.TestCase):
    def run_binary(self, args):
        result = subprocess.run([harness.server_binary()] + args, capture_output=True, timeout=60)
        stderr = result.stderr.decode("utf-8", "replace")
        self.assertEqual(harness.sanitizer_lines(stderr.splitlines()), [],
                         f"sanitizer reports:\n{stderr}")
        return result.returncode, result.stdout.decode("utf-8", "replace"), stderr

    def test_help_lists_flags_with_defaults(self):
        code, stdout, stderr = self.run_binary(["--help"])
        self.assertEqual(code, 0, f"--help exit code; stderr {stderr}")
        lines = stdout.splitlines()
        for flag, default in HELP_FLAGS.items():
            matching = [i for i, line in enumerate(lines) if re.search(re.escape(flag) + r"\b", line)]
            self.assertTrue(matching, f"--help does not list {flag}:\n{stdout}")
            if default is not None:
                start = matching[0]
                nearby = "\n".join(lines[start:start + 4])
                self.assertIn(default, nearby, f"--help shows no default {default} for {flag}")
        self.assertIn("default", stdout.lower(), "--help mentions no defaults")

    def test_version(self):
        code, stdout, stderr = self.run_binary(["--version"])
        self.assertEqual(code, 0, f"--version exit code; stderr {stderr}")
        self.assertIn("0.1.0", stdout, "--version output")
        self.assertIn("1.29", stdout, "--version lacks the ONNX Runtime version")

    def test_unknown_flag(self):
        code, stdout, stderr = self.run_binary(["--no-such-flag"])
        self.assertNotEqual(code, 0, "exit code for an unknown flag")
        self.assertIn("--no-such-flag", stderr, "error for an unknown flag")

    def test_invalid_flag_value(self):
        code, stdout, stderr = self.run_binary(["--workers", "lots",
                                                os.path.join(harness.test_data_dir(), "scale.onnx")])
        self.assertNotEqual(code, 0, "exit code for --workers lots")
        self.assertIn("lots", stderr, "error for --workers lots")


if __name__ == "__main__":
    unittest.main(verbosity=2)
