#!/usr/bin/python3
"""onnxserve-bench against a running server: each protocol, the closed and the open loop, the
CSV, JSON and SVG results, and the errors it counts (HTTP status, connect, timeout and
bad_response).

The load generator is found next to the server binary (both land in the build folder's top
level), or at ONNXSERVE_BENCH_BIN when that is set. Each run is short (0.2 s of warm-up and
windows of 0.4 s); nothing here checks a speed."""
import csv
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import unittest
import xml.etree.ElementTree as ElementTree
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import onnx
from onnx import TensorProto, helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

SHORT_RUN = ["--warmup-secs", "0.2", "--window-secs", "0.4", "--max-windows", "2"]

STEP_FIELDS = ["throughput", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms", "requests",
               "errors", "windows", "stable", "server_queue_us", "server_compute_us"]

CSV_COLUMNS = ["label", "model", "protocol", "mode", "throughput", "p50_ms", "p90_ms", "p99_ms",
               "p999_ms", "max_ms", "requests", "errors", "windows", "stable",
               "server_queue_us", "server_compute_us"]

# Datatypes that onnxserve-bench fills with random values, as ONNX element types.
RANDOM_TYPES = [("fp32", "FP32", TensorProto.FLOAT), ("fp64", "FP64", TensorProto.DOUBLE),
                ("int32", "INT32", TensorProto.INT32), ("int64", "INT64", TensorProto.INT64),
                ("uint8", "UINT8", TensorProto.UINT8), ("bool", "BOOL", TensorProto.BOOL)]


def bench_binary():
    path = os.environ.get("ONNXSERVE_BENCH_BIN")
    if path:
        return path
    return os.path.join(os.path.dirname(harness.server_binary()), "onnxserve-bench")


def run_bench(args, timeout=120):
    """Run onnxserve-bench and return (exit code, stdout, stderr)."""
    result = subprocess.run([bench_binary()] + list(args), capture_output=True, timeout=timeout,
                            stdin=subprocess.DEVNULL)
    return (result.returncode, result.stdout.decode("utf-8", "replace"),
            result.stderr.decode("utf-8", "replace"))


def free_port():
    """Return a loopback port that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((harness.HOST, 0))
        return sock.getsockname()[1]


def make_types_model(path):
    """Identity model with one [-1, 3] input per datatype of RANDOM_TYPES."""
    nodes, inputs, outputs = [], [], []
    for suffix, _, element_type in RANDOM_TYPES:
        inputs.append(helper.make_tensor_value_info("x_" + suffix, element_type, ["batch", 3]))
        outputs.append(helper.make_tensor_value_info("y_" + suffix, element_type, ["batch", 3]))
        nodes.append(helper.make_node("Identity", ["x_" + suffix], ["y_" + suffix]))
    graph = helper.make_graph(nodes, "types", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


class FakeServer:
    """A loopback HTTP server for the error kinds that onnxserve does not produce. With
    answer=False it reads requests and never responds, else it responds 200 with a /predict
    body that has no "shape"."""

    def __init__(self, answer):
        answer_requests = answer

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if not answer_requests:
                    threading.Event().wait(30)
                    return
                body = b'{"output": [0.5, 0.5]}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer((harness.HOST, 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class BenchTest(harness.ServerTestCase):
    @classmethod
    def setUpClass(cls):
        cls.folder = tempfile.TemporaryDirectory(prefix="oxs-bench-")
        cls.data = harness.test_data_dir()

    @classmethod
    def tearDownClass(cls):
        cls.folder.cleanup()

    def setUp(self):
        self.server = self.start_server([os.path.join(self.data, "scale.onnx")])
        self.url = f"http://{harness.HOST}:{self.server.port}"

    def path(self, name):
        return os.path.join(self.folder.name, f"{self.id().rsplit('.', 1)[-1]}-{name}")

    def bench(self, args, expected_code=0):
        code, stdout, stderr = run_bench(args)
        self.assertEqual(harness.sanitizer_lines(stderr.splitlines()), [],
                         f"sanitizer report in onnxserve-bench stderr:\n{stderr}")
        self.assertEqual(code, expected_code,
                         f"onnxserve-bench {' '.join(args)}\nstdout:\n{stdout}\nstderr:\n{stderr}")
        return stdout, stderr

    def bench_json(self, args):
        """Run with --json FILE and return the parsed document and stdout."""
        path = self.path("result.json")
        stdout, _ = self.bench(args + ["--json", path])
        with open(path) as f:
            return json.load(f), stdout

    def check_steps(self, document, load_key, loads, expect_server_stats=True):
        self.assertEqual([step[load_key] for step in document["steps"]], loads)
        for step in document["steps"]:
            for field in STEP_FIELDS:
                self.assertIn(field, step)
            self.assertEqual(step["errors"], {}, step)
            self.assertGreater(step["requests"], 0, step)
            self.assertGreater(step["throughput"], 0, step)
            percentiles = [step[k] for k in ("p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms")]
            self.assertEqual(percentiles, sorted(percentiles), step)
            self.assertGreater(step["p50_ms"], 0, step)
            self.assertIn(step["windows"], (1, 2), step)
            self.assertIsInstance(step["stable"], bool)
            if expect_server_stats:
                self.assertIsInstance(step["server_queue_us"], float, step)
                self.assertIsInstance(step["server_compute_us"], float, step)
                self.assertGreaterEqual(step["server_queue_us"], 0, step)
            else:
                self.assertIsNone(step["server_queue_us"], step)
                self.assertIsNone(step["server_compute_us"], step)

    def test_help_lists_options(self):
        stdout, _ = self.bench(["--help"])
        for option in ["--url", "--model", "--model-version", "--protocol", "--shape", "--batch",
                       "--datatype", "--no-metadata", "--input-file", "--concurrency",
                       "--request-rate", "--connections", "--warmup-secs", "--window-secs",
                       "--stability-percent", "--max-windows", "--csv", "--json", "--svg",
                       "--label", "--seed", "--timeout-secs", "--quiet", "--help"]:
            self.assertIn(option, stdout)
        self.assertIn("default", stdout)

    def test_closed_loop_json_outputs(self):
        csv_path, json_path, svg_path = (self.path("r.csv"), self.path("r.json"),
                                         self.path("r.svg"))
        stdout, stderr = self.bench(["--url", self.url, "--model", "scale", "--concurrency", "1,3",
                                     "--label", "scale <test>", "--csv", csv_path, "--json",
                                     json_path, "--svg", svg_path] + SHORT_RUN)
        # stderr is a pipe, so no progress line.
        self.assertNotIn("\r", stderr)
        self.assertIn("concurrency", stdout)
        self.assertIn("p99.9 ms", stdout)

        with open(json_path) as f:
            document = json.load(f)
        self.assertEqual(document["label"], "scale <test>")
        self.assertEqual(document["model"], "scale")
        self.assertEqual(document["protocol"], "json")
        self.assertEqual(document["mode"], "closed")
        self.check_steps(document, "concurrency", [1, 3])

        with open(csv_path, newline="") as f:
            rows = list(csv.DictReader(f))
        self.assertEqual(len(rows), 2)
        for column in CSV_COLUMNS + ["concurrency"]:
            self.assertIn(column, rows[0])
        self.assertEqual([row["concurrency"] for row in rows], ["1", "3"])
        self.assertEqual(rows[0]["label"], "scale <test>")
        self.assertEqual(rows[0]["errors"], "0")
        for row, step in zip(rows, document["steps"]):
            self.assertEqual(int(row["requests"]), step["requests"])

        tree = ElementTree.parse(svg_path)
        root = tree.getroot()
        self.assertEqual(root.tag, "{http://www.w3.org/2000/svg}svg")
        lines = root.findall("{http://www.w3.org/2000/svg}polyline")
        self.assertEqual(len(lines), 2)
        for line in lines:
            self.assertEqual(len(line.get("points").split()), 2)
        texts = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
        self.assertIn("throughput", texts)
        self.assertIn("latency (ms)", texts)
        self.assertIn("p99", texts)
        self.assertIn("scale <test>", texts)

    def test_binary_protocol_batch(self):
        document, _ = self.bench_json(["--url", self.url, "--model", "scale", "--protocol",
                                       "binary", "--batch", "3", "--concurrency", "2"]
                                      + SHORT_RUN)
        self.assertEqual(document["protocol"], "binary")
        self.check_steps(document, "concurrency", [2])

    def test_predict_open_loop(self):
        document, stdout = self.bench_json(["--url", self.url, "--model", "scale", "--protocol",
                                            "predict", "--request-rate", "50,100",
                                            "--connections", "4"] + SHORT_RUN)
        self.assertEqual(document["mode"], "open")
        self.assertEqual(document["protocol"], "predict")
        self.check_steps(document, "request_rate", [50.0, 100.0])
        self.assertIn("rate", stdout)

    def test_json_open_loop(self):
        document, _ = self.bench_json(["--url", self.url, "--model", "scale", "--request-rate",
                                       "80"] + SHORT_RUN)
        self.check_steps(document, "request_rate", [80.0])

    def test_binary_open_loop_and_predict_closed(self):
        document, _ = self.bench_json(["--url", self.url, "--model", "scale", "--protocol",
                                       "binary", "--request-rate", "80"] + SHORT_RUN)
        self.check_steps(document, "request_rate", [80.0])
        document, _ = self.bench_json(["--url", self.url, "--model", "scale", "--protocol",
                                       "predict", "--concurrency", "2"] + SHORT_RUN)
        self.check_steps(document, "concurrency", [2])

    def test_predict_without_metadata(self):
        document, _ = self.bench_json(["--url", self.url, "--model", "scale", "--protocol",
                                       "predict", "--no-metadata", "--shape", "x=2,4",
                                       "--concurrency", "2"] + SHORT_RUN)
        self.check_steps(document, "concurrency", [2], expect_server_stats=False)

    def test_input_file(self):
        path = self.path("inputs.json")
        with open(path, "w") as f:
            json.dump({"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32",
                                   "data": [[1, 2, 3, 4], [5, 6, 7, 8]]}]}, f)
        for protocol in ("json", "binary", "predict"):
            document, _ = self.bench_json(["--url", self.url, "--model", "scale", "--protocol",
                                           protocol, "--input-file", path] + SHORT_RUN)
            self.check_steps(document, "concurrency", [1])

    def test_wrong_shape_counts_400(self):
        document, stdout = self.bench_json(["--url", self.url, "--model", "scale", "--shape",
                                            "x=1,5", "--concurrency", "2"] + SHORT_RUN)
        step = document["steps"][0]
        self.assertEqual(list(step["errors"]), ["400"], step)
        self.assertGreater(step["errors"]["400"], 0)
        self.assertEqual(step["requests"], step["errors"]["400"])
        self.assertEqual(step["throughput"], 0)
        self.assertIn("400:", stdout)

    def test_random_datatypes(self):
        model = os.path.join(self.folder.name, "types.onnx")
        make_types_model(model)
        server = self.start_server([model])
        url = f"http://{harness.HOST}:{server.port}"
        for protocol in ("json", "binary"):
            document, _ = self.bench_json(["--url", url, "--model", "types", "--protocol",
                                           protocol, "--batch", "2"] + SHORT_RUN)
            self.check_steps(document, "concurrency", [1])

    def test_model_version_path(self):
        document, _ = self.bench_json(["--url", self.url, "--model", "scale", "--model-version",
                                       "1", "--protocol", "binary"] + SHORT_RUN)
        self.check_steps(document, "concurrency", [1])

    def test_unknown_model_or_version_fails(self):
        _, stderr = self.bench(["--url", self.url, "--model", "missing"] + SHORT_RUN,
                               expected_code=1)
        self.assertIn("HTTP 404", stderr)
        _, stderr = self.bench(["--url", self.url, "--model", "scale", "--model-version", "7"]
                               + SHORT_RUN, expected_code=1)
        self.assertIn("/v2/models/scale/versions/7", stderr)

    def test_invalid_options_exit_2(self):
        cases = [
            ["--model", "scale", "--no-metadata", "--shape", "x=1,4"],
            ["--model", "scale", "--concurrency", "1", "--request-rate", "10"],
            ["--model", "scale", "--concurrency", "0"],
            ["--model", "scale", "--protocol", "grpc"],
            ["--model", "scale", "--shape", "x"],
            ["--model", "scale", "--csv", "-", "--json", "-"],
            ["--model", "scale", "--no-such-option"],
            ["--concurrency", "1"],
        ]
        for args in cases:
            _, stderr = self.bench(["--url", self.url] + args, expected_code=2)
            self.assertIn("onnxserve-bench:", stderr, args)


class BenchErrorKindTest(unittest.TestCase):
    """Error kinds against servers that fail in ways onnxserve does not."""

    def run_no_metadata(self, port, extra):
        with tempfile.TemporaryDirectory(prefix="oxs-bench-") as folder:
            path = os.path.join(folder, "result.json")
            code, stdout, stderr = run_bench(
                ["--url", f"http://{harness.HOST}:{port}", "--model", "m", "--protocol",
                 "predict", "--no-metadata", "--shape", "x=1,4", "--json", path] + SHORT_RUN
                + extra)
            self.assertEqual(harness.sanitizer_lines(stderr.splitlines()), [], stderr)
            self.assertEqual(code, 0, f"stdout:\n{stdout}\nstderr:\n{stderr}")
            with open(path) as f:
                return json.load(f)["steps"][0]

    def test_connect_errors(self):
        step = self.run_no_metadata(free_port(), ["--concurrency", "2"])
        self.assertGreater(step["errors"].get("connect", 0), 0, step)
        self.assertEqual(step["throughput"], 0)

    def test_timeout_errors(self):
        server = FakeServer(answer=False)
        self.addCleanup(server.close)
        step = self.run_no_metadata(server.port, ["--concurrency", "2", "--timeout-secs", "0.1"])
        self.assertGreater(step["errors"].get("timeout", 0), 0, step)

    def test_bad_response_errors(self):
        server = FakeServer(answer=True)
        self.addCleanup(server.close)
        step = self.run_no_metadata(server.port, ["--concurrency", "1"])
        self.assertGreater(step["errors"].get("bad_response", 0), 0, step)
        self.assertEqual(list(step["errors"]), ["bad_response"], step)


if __name__ == "__main__":
    unittest.main(verbosity=2)
