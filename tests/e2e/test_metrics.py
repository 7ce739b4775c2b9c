#!/usr/bin/python3
"""Prometheus metrics end to end. GET /metrics on the metrics port after known traffic returns
exact counters and well-formed histograms that promtool accepts. The tests also cover which ports
and paths serve it, label values that only come from loaded models, a real Prometheus server that
scrapes onnxserve and runs queries, and the example Grafana dashboard against a real scrape."""
import http.client
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"
DASHBOARD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy",
                         "grafana-dashboard.json")

# Upper bounds of the buckets, as the le label writes them.
DURATION_BOUNDS = ["0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025",
                   "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"]
BATCH_BOUNDS = ["1", "2", "4", "8", "16", "32", "64", "128", "256", "+Inf"]
DURATION_FAMILIES = ["onnxserve_request_duration_seconds", "onnxserve_queue_duration_seconds",
                     "onnxserve_compute_input_duration_seconds",
                     "onnxserve_compute_infer_duration_seconds",
                     "onnxserve_compute_output_duration_seconds"]
OUTCOMES = ["success", "rejected", "timeout", "canceled", "invalid", "backend"]

# Every family the server exports without a GPU, with its type.
EXPECTED_FAMILIES = {
    "onnxserve_requests_total": "counter",
    "onnxserve_inferences_total": "counter",
    "onnxserve_executions_total": "counter",
    "onnxserve_queued_requests": "gauge",
    "onnxserve_pending_requests": "gauge",
    "onnxserve_batch_size": "histogram",
    "process_cpu_seconds_total": "counter",
    "process_resident_memory_bytes": "gauge",
    "onnxserve_threads": "gauge",
    "onnxserve_open_connections": "gauge",
}
EXPECTED_FAMILIES.update({name: "histogram" for name in DURATION_FAMILIES})

# Rows of each successful request in the exact-count test. They are sent one after another, so
# each runs alone and the batch size histogram records exactly these sizes.
REQUEST_ROWS = [1, 2, 3, 1, 4, 1, 2, 8]

# Labels that Prometheus adds to every scraped series.
TARGET_LABELS = {"job", "instance"}

# How long the Prometheus test sends traffic, and its longest wait for any one condition.
TRAFFIC_SECONDS = 6.0
TRAFFIC_THREADS = 2
PROMETHEUS_WAIT_SECONDS = 180.0
RATE_WINDOW = "20s"

# Values for the dashboard's variables when its queries run against a real Prometheus.
DASHBOARD_VARIABLES = {"$__rate_interval": RATE_WINDOW, "$instance": ".*", "$model": ".+"}

SAMPLE_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: (-?\d+))?$")
LABEL_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')
IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}")
MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)\s*"')
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
RATE_ARGUMENT = re.compile(r"\b(?:rate|irate|increase)\s*\(\s*([A-Za-z_:][A-Za-z0-9_:]*)")
LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$", re.S)
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
                   "unless", "bool", "offset", "inf", "nan"}


# ---- the exposition format --------------------------------------------------------------------

class Scrape:
    """A parsed Prometheus text-format page: families[name] = {"help", "type"} and samples, a
    list of (sample name, labels dict, value, family name)."""

    def __init__(self, text):
        self.text = text
        self.families = {}
        self.samples = []
        self.errors = []
        for number, line in enumerate(text.split("\n"), 1):
            self._parse_line(number, line)

    def _parse_line(self, number, line):
        if line == "":
            return
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                family = self.families.setdefault(parts[2], {"help": None, "type": None})
                key = parts[1].lower()
                if family[key] is not None:
                    self.errors.append(f"line {number}: second {parts[1]} for {parts[2]}")
                family[key] = parts[3] if len(parts) == 4 else ""
            return
        match = SAMPLE_LINE.match(line)
        if match is None:
            self.errors.append(f"line {number}: not a sample line: {line!r}")
            return
        name, label_text, value_text = match.group(1), match.group(2), match.group(3)
        labels = self._parse_labels(number, label_text or "")
        try:
            value = float(value_text)
        except ValueError:
            self.errors.append(f"line {number}: value {value_text!r} is not a number")
            return
        family = self.family_of(name)
        if family is None:
            self.errors.append(f"line {number}: sample {name} has no TYPE line before it")
        self.samples.append((name, labels, value, family))

    def _parse_labels(self, number, text):
        labels = {}
        position = 0
        while position < len(text):
            match = LABEL_PAIR.match(text, position)
            if match is None:
                self.errors.append(f"line {number}: invalid labels {text!r}")
                return labels
            if match.group(1) in labels:
                self.errors.append(f"line {number}: label {match.group(1)} twice")
            labels[match.group(1)] = match.group(2)
            position = match.end()
            if position < len(text):
                if text[position] != ",":
                    self.errors.append(f"line {number}: invalid labels {text!r}")
                    return labels
                position += 1
        return labels

    def family_of(self, sample_name):
        """Return the declared family a sample name belongs to, or None."""
        family = self.families.get(sample_name)
        if family is not None and family["type"] is not None:
            return sample_name
        for suffix in ("_bucket", "_sum", "_count"):
            if sample_name.endswith(suffix):
                base = sample_name[:-len(suffix)]
                family = self.families.get(base)
                if family is not None and family["type"] == "histogram":
                    return base
        return None

    def find(self, name, **labels):
        """Return the samples of name whose label set is exactly labels."""
        return [value for sample, sample_labels, value, _ in self.samples
                if sample == name and sample_labels == labels]

    def value(self, name, **labels):
        found = self.find(name, **labels)
        if len(found) != 1:
            raise AssertionError(f"{len(found)} samples {name}{labels}, expected 1. Scrape:\n"
                                 + self.text)
        return found[0]

    def sample_names(self):
        return {name for name, _, _, _ in self.samples}

    def label_names(self, sample_name):
        names = set()
        for name, labels, _, _ in self.samples:
            if name == sample_name:
                names.update(labels)
        return names

    def label_values(self, label):
        return {labels[label] for _, labels, _, _ in self.samples if label in labels}

    def histogram(self, family, **labels):
        """Return ([(le, cumulative count)], sum, count) of one histogram series."""
        buckets = []
        for name, sample_labels, value, _ in self.samples:
            if name != family + "_bucket" or "le" not in sample_labels:
                continue
            rest = {key: v for key, v in sample_labels.items() if key != "le"}
            if rest == labels:
                buckets.append((sample_labels["le"], value))
        return (buckets, self.value(family + "_sum", **labels),
                self.value(family + "_count", **labels))


def fetch(port, method, path, body=None, headers=None, timeout=60.0):
    """Send one request to 127.0.0.1:port on a new connection and return a harness.Response."""
    conn = http.client.HTTPConnection(harness.HOST, port, timeout=timeout)
    try:
        return harness.send_request(conn, method, path, body, headers)
    finally:
        conn.close()


def scrape(test, port):
    """Fetch /metrics from port, check the status and content type, and return a Scrape."""
    response = fetch(port, "GET", "/metrics")
    test.assertStatus(response, 200, f"GET /metrics on port {port}")
    test.assertEqual(response.header("Content-Type"), CONTENT_TYPE, "/metrics content type")
    return Scrape(response.body.decode("utf-8"))


# ---- requests ---------------------------------------------------------------------------------

def scale_input(rows, offset=0.0):
    return (np.arange(rows * 4, dtype=np.float32).reshape(rows, 4) - 3.5 + offset)


def check_scale_reply(test, response, x, context):
    test.assertStatus(response, 200, context)
    outputs = {output["name"]: output for output in response.json()["outputs"]}
    actual = harness.output_array(outputs["y"])
    expected = (x * np.float32(2) + np.float32(1)).astype(np.float32)
    difference = harness.compare_arrays("y", actual, expected)
    test.assertEqual(difference, "", f"{context}: scale output")


def scale_body(x):
    return json.dumps({"inputs": [harness.infer_input("x", "FP32", x)]}).encode()


def make_repository(folder, names):
    """Build a repository in folder with the named test models. The model "broken" is a file
    that is not ONNX, so it never becomes READY."""
    models = {name: os.path.join(harness.test_data_dir(), name + ".onnx")
              for name in names if name != "broken"}
    harness.make_repository(folder, models)
    if "broken" in names:
        version = os.path.join(folder, "broken", "1")
        os.makedirs(version, exist_ok=True)
        with open(os.path.join(version, "model.onnx"), "wb") as f:
            f.write(b"this is not an ONNX model\n")
    return folder


# ---- the dashboard ----------------------------------------------------------------------------

def load_dashboard():
    with open(DASHBOARD) as f:
        return json.load(f)


def dashboard_panels(panels):
    """Yield every panel, those nested in collapsed rows included."""
    for panel in panels:
        yield panel
        yield from dashboard_panels(panel.get("panels", []))


def dashboard_expressions(dashboard):
    """Return [(where, PromQL expression)] of every panel target and every query variable. For
    a label_values() variable query, the expression is its series selector."""
    expressions = []
    for panel in dashboard_panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if "expr" in target:
                expressions.append((f"panel {panel.get('title')!r} target {target.get('refId')}",
                                    target["expr"]))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        match = LABEL_VALUES.match(query or "")
        where = f"variable {variable.get('name')!r}"
        expressions.append((where, match.group(1) if match else query))
    return expressions


def variable_labels(dashboard):
    """Return [(variable name, series selector, label)] of the label_values() variables."""
    result = []
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        match = LABEL_VALUES.match(query or "") if variable.get("type") == "query" else None
        if match:
            result.append((variable.get("name"), match.group(1), match.group(2)))
    return result


def strip_promql(expr):
    """Remove string literals, label matchers, range and subquery brackets, and numbers, so
    that the identifiers left are metric names, functions, aggregations, keywords and the
    label lists of by/without/on/ignoring clauses."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"(?<![A-Za-z0-9_:.])\d+(?:\.\d*)?(?:[eE][+-]?\d+)?", " ", text)
    return text


def metric_names(expr):
    """Return the metric names an expression selects."""
    text = GROUPING.sub(" ", strip_promql(expr))
    names = set()
    for match in IDENTIFIER.finditer(text):
        token = match.group(0)
        if text[match.end():].lstrip().startswith("("):
            continue  # a function or an aggregation
        if token.lower() in PROMQL_KEYWORDS or token.startswith("$"):
            continue
        names.add(token)
    return names


def substitute_variables(expr):
    for variable, value in DASHBOARD_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


# ---- tests against onnxserve alone -------------------------------------------------------------

class MetricsTest(harness.ServerTestCase):
    def setUp(self):
        self.tempdir = tempfile.TemporaryDirectory(prefix="oxs-metrics-")
        self.addCleanup(self.tempdir.cleanup)

    def start(self, names=("scale", "identity"), extra_args=()):
        repository = make_repository(os.path.join(self.tempdir.name, "repo"), names)
        server = self.start_server(["--model-repository", repository] + list(extra_args))
        self.assertIsNotNone(server.metrics_port, "no metrics_port in the listening log line")
        return server

    def send_known_traffic(self, server):
        """Send the successful requests of REQUEST_ROWS, one request with a bad input (400) and
        one for an unknown model (404)."""
        for index, rows in enumerate(REQUEST_ROWS):
            x = scale_input(rows, offset=index)
            response = server.post_json("/v2/models/scale/infer", scale_body(x))
            check_scale_reply(self, response, x, f"request {index} with {rows} rows")

        bad = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32",
                           "data": [1.0, 2.0, 3.0]}]}
        response = server.post_json("/v2/models/scale/infer", bad)
        self.assertStatus(response, 400, "scale with a [1, 3] input")

        response = server.post_json("/v2/models/no_such_model/infer", scale_body(scale_input(1)))
        self.assertStatus(response, 404, "infer on an unknown model")

    def check_format(self, page):
        self.assertEqual(page.errors, [], "format errors in the scrape:\n" + page.text)
        for name, family in page.families.items():
            self.assertTrue(family["help"], f"family {name} has no HELP text")
            self.assertIn(family["type"], ("counter", "gauge", "histogram"),
                          f"family {name} TYPE")
            if family["type"] == "counter":
                self.assertTrue(name.endswith("_total"), f"counter {name} lacks _total")
        for name, expected_type in EXPECTED_FAMILIES.items():
            self.assertIn(name, page.families, f"family {name} is missing")
            self.assertEqual(page.families[name]["type"], expected_type, f"TYPE of {name}")

    def check_histogram(self, page, family, bounds, labels):
        buckets, total, count = page.histogram(family, **labels)
        context = f"{family}{labels}"
        self.assertEqual([le for le, _ in buckets], bounds, f"{context}: bucket bounds")
        counts = [value for _, value in buckets]
        for lower, upper in zip(counts, counts[1:]):
            self.assertLessEqual(lower, upper, f"{context}: buckets are not cumulative: {counts}")
        self.assertEqual(counts[-1], count, f"{context}: le=\"+Inf\" differs from _count")
        self.assertGreaterEqual(total, 0, f"{context}: _sum")
        return counts, total, count

    def test_scrape_counts_known_traffic(self):
        server = self.start()
        self.send_known_traffic(server)

        threads_before = server.thread_count()
        page = scrape(self, server.metrics_port)
        threads_after = server.thread_count()
        self.check_format(page)
        scale = {"model": "scale", "version": "1"}
        identity = {"model": "identity", "version": "1"}

        expected_outcomes = {outcome: 0 for outcome in OUTCOMES}
        expected_outcomes["success"] = len(REQUEST_ROWS)
        expected_outcomes["invalid"] = 1
        for outcome, expected in expected_outcomes.items():
            self.assertEqual(page.value("onnxserve_requests_total", outcome=outcome, **scale),
                             expected, f"scale requests with outcome {outcome}")
            self.assertEqual(page.value("onnxserve_requests_total", outcome=outcome, **identity),
                             0, f"identity requests with outcome {outcome}")
        self.assertEqual(page.value("onnxserve_requests_total", outcome="invalid"), 1,
                         "requests for an unknown model")

        self.assertEqual(page.value("onnxserve_inferences_total", **scale), sum(REQUEST_ROWS),
                         "scale rows run")
        self.assertEqual(page.value("onnxserve_executions_total", **scale), len(REQUEST_ROWS),
                         "scale runs")
        self.assertEqual(page.value("onnxserve_inferences_total", **identity), 0)
        self.assertEqual(page.value("onnxserve_executions_total", **identity), 0)

        for family in DURATION_FAMILIES:
            counts, total, count = self.check_histogram(page, family, DURATION_BOUNDS, scale)
            self.assertEqual(count, len(REQUEST_ROWS), f"{family} _count for scale")
            counts, total, count = self.check_histogram(page, family, DURATION_BOUNDS, identity)
            self.assertEqual(count, 0, f"{family} _count for identity")
            self.assertEqual(total, 0, f"{family} _sum for identity")
        _, request_seconds, _ = page.histogram("onnxserve_request_duration_seconds", **scale)
        self.assertGreater(request_seconds, 0, "request duration _sum for scale")

        counts, rows, runs = self.check_histogram(page, "onnxserve_batch_size", BATCH_BOUNDS,
                                                  scale)
        expected_counts = [sum(1 for r in REQUEST_ROWS if r <= int(le)) for le in
                           BATCH_BOUNDS[:-1]] + [len(REQUEST_ROWS)]
        self.assertEqual(counts, expected_counts, "scale batch size buckets")
        self.assertEqual(rows, sum(REQUEST_ROWS), "scale batch size _sum")
        self.assertEqual(runs, len(REQUEST_ROWS), "scale batch size _count")

        self.assertEqual(page.value("onnxserve_queued_requests", **scale), 0, "scale queued")
        self.assertEqual(page.value("onnxserve_pending_requests"), 0, "pending requests")
        self.assertGreaterEqual(page.value("onnxserve_open_connections"), 1,
                                "open connections while the scrape's own is open")
        threads = page.value("onnxserve_threads")
        self.assertGreater(threads, 1, "onnxserve_threads")
        if threads_before == threads_after:
            self.assertEqual(threads, threads_before, "onnxserve_threads against /proc")
        cpu = page.value("process_cpu_seconds_total")
        self.assertTrue(math.isfinite(cpu) and cpu > 0, f"process_cpu_seconds_total {cpu}")
        resident = page.value("process_resident_memory_bytes")
        with open(f"/proc/{server.pid}/status") as f:
            vm_rss_kib = int(re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M).group(1))
        self.assertGreater(resident, vm_rss_kib * 1024 / 2, "resident memory against VmRSS")
        self.assertLess(resident, vm_rss_kib * 1024 * 2, "resident memory against VmRSS")

        # Counters only grow: a second scrape after one more request.
        x = scale_input(1)
        check_scale_reply(self, server.post_json("/v2/models/scale/infer", scale_body(x)), x,
                          "one more request")
        later = scrape(self, server.metrics_port)
        self.assertEqual(later.value("onnxserve_requests_total", outcome="success", **scale),
                         len(REQUEST_ROWS) + 1, "scale successes after one more request")
        self.assertGreaterEqual(later.value("process_cpu_seconds_total"), cpu,
                                "process_cpu_seconds_total went down")

    @unittest.skipUnless(os.path.exists(PROMTOOL), f"{PROMTOOL} is missing: run "
                         "scripts/install-deps.sh, which installs Debian's prometheus package")
    def test_scrape_passes_promtool(self):
        server = self.start()
        self.send_known_traffic(server)
        response = fetch(server.metrics_port, "GET", "/metrics")
        self.assertStatus(response, 200, "GET /metrics")
        result = subprocess.run([PROMTOOL, "check", "metrics"], input=response.body,
                                capture_output=True, timeout=120)
        self.assertEqual(result.returncode, 0,
                         f"promtool check metrics: {result.stdout!r} {result.stderr!r}\n"
                         + response.body.decode("utf-8", "replace"))

    def test_metrics_port_serves_only_metrics(self):
        server = self.start()
        x = scale_input(1)
        check_scale_reply(self, server.post_json("/v2/models/scale/infer", scale_body(x)), x,
                          "scale on the HTTP port")

        for path in ["/", "/metrics/", "/metricsx", "/v2/health/live", "/v2/health/ready",
                     "/v2", "/v2/models/scale", "/v2/models/stats"]:
            response = fetch(server.metrics_port, "GET", path)
            self.assertStatus(response, 404, f"GET {path} on the metrics port")
        response = fetch(server.metrics_port, "POST", "/v2/models/scale/infer", scale_body(x),
                         {"Content-Type": "application/json"})
        self.assertStatus(response, 404, "infer on the metrics port")

        response = fetch(server.metrics_port, "GET", "/metrics?name=onnxserve_threads")
        self.assertStatus(response, 200, "GET /metrics with a query string")
        response = server.get("/metrics")
        self.assertStatus(response, 404, "GET /metrics on the HTTP port by default")

        page = scrape(self, server.metrics_port)
        self.assertEqual(page.value("onnxserve_requests_total", model="scale", version="1",
                                    outcome="success"), 1,
                         "scale successes: the infer on the metrics port must not run")

    def test_metrics_on_http_port_flag(self):
        server = self.start(extra_args=["--metrics-on-http-port", "true"])
        x = scale_input(2)
        check_scale_reply(self, server.post_json("/v2/models/scale/infer", scale_body(x)), x,
                          "scale with 2 rows")

        on_http = scrape(self, server.port)
        self.check_format(on_http)
        self.assertEqual(on_http.value("onnxserve_requests_total", model="scale", version="1",
                                       outcome="success"), 1, "scale successes on the HTTP port")
        on_metrics = scrape(self, server.metrics_port)
        self.assertEqual(set(on_http.families), set(on_metrics.families),
                         "families on the HTTP port and on the metrics port")
        response = server.get("/v2/health/live")
        self.assertStatus(response, 200, "liveness on the HTTP port")

    def test_label_values_from_loaded_models(self):
        server = self.start(names=("scale", "broken"))
        body = scale_body(scale_input(1))
        probes = [
            ("POST", "/v2/models/attacker_label/infer", body),
            ("POST", "/v2/models/attacker_label/versions/1/infer", body),
            ("GET", "/v2/models/attacker_label", None),
            ("GET", "/v2/models/attacker_label/ready", None),
            ("POST", "/v2/models/scale/versions/99/infer", body),
            ("POST", "/v2/models/broken/infer", body),
        ]
        for method, path, payload in probes:
            response = server.request(method, path, payload, {"Content-Type": "application/json"})
            self.assertStatus(response, (404, 503), f"{method} {path}")

        page = scrape(self, server.metrics_port)
        self.check_format(page)
        self.assertNotIn("attacker_label", page.text, "a client's model name in the scrape")
        self.assertEqual(page.label_values("model"), {"scale"}, "model label values")
        self.assertEqual(page.label_values("version"), {"1"}, "version label values")
        self.assertGreaterEqual(page.value("onnxserve_requests_total", outcome="invalid"), 2,
                                "requests for unknown models, counted without model labels")

    def test_dashboard_uses_only_exported_metrics(self):
        dashboard = load_dashboard()
        server = self.start()
        self.send_known_traffic(server)
        page = scrape(self, server.metrics_port)
        exported = page.sample_names()

        expressions = dashboard_expressions(dashboard)
        self.assertGreater(len(expressions), 0, "the dashboard has no PromQL expressions")
        used = set()
        for where, expr in expressions:
            names = metric_names(expr)
            self.assertTrue(names, f"{where}: no metric name found in {expr!r}")
            used.update(names)
            for name in names:
                self.assertIn(name, exported, f"{where}: {name} is not in a real scrape")

            # Label matchers name labels that the metric has.
            for metric, matchers in SELECTOR.findall(expr):
                for label in MATCHER.findall(matchers):
                    self.assertIn(label, page.label_names(metric) | TARGET_LABELS,
                                  f"{where}: {metric} has no label {label}")

            # Grouping clauses name labels of the metrics in the expression.
            available = TARGET_LABELS.union(*(page.label_names(name) for name in names))
            for clause in GROUPING.findall(strip_promql(expr)):
                for label in filter(None, (item.strip() for item in clause.split(","))):
                    self.assertIn(label, available, f"{where}: grouping by unknown label")

            # rate() and increase() take counters and histogram series, never gauges.
            for name in RATE_ARGUMENT.findall(expr):
                family = page.family_of(name)
                self.assertIn(page.families[family]["type"], ("counter", "histogram"),
                              f"{where}: rate over {name}, a {page.families[family]['type']}")
            if "histogram_quantile" in expr:
                for name in names:
                    self.assertTrue(name.endswith("_bucket"),
                                    f"{where}: histogram_quantile over {name}")

        for variable, selector, label in variable_labels(dashboard):
            for name in metric_names(selector):
                self.assertIn(label, page.label_names(name) | TARGET_LABELS,
                              f"variable {variable}: {name} has no label {label}")

        # The panels the dashboard exists for.
        for required in ["onnxserve_requests_total", "onnxserve_request_duration_seconds_bucket",
                         "onnxserve_queue_duration_seconds_sum",
                         "onnxserve_compute_infer_duration_seconds_sum",
                         "onnxserve_batch_size_bucket", "onnxserve_pending_requests",
                         "onnxserve_queued_requests", "process_cpu_seconds_total",
                         "process_resident_memory_bytes", "onnxserve_open_connections"]:
            self.assertIn(required, used, f"the dashboard does not show {required}")

    def test_dashboard_datasource_variable(self):
        dashboard = load_dashboard()
        variables = {v.get("name"): v for v in dashboard["templating"]["list"]}
        self.assertIn("datasource", variables, "dashboard variables")
        self.assertEqual(variables["datasource"].get("type"), "datasource")
        self.assertEqual(variables["datasource"].get("query"), "prometheus")
        for panel in dashboard_panels(dashboard["panels"]):
            if panel.get("type") == "row":
                continue
            self.assertEqual(panel.get("datasource"),
                             {"type": "prometheus", "uid": "${datasource}"},
                             f"panel {panel.get('title')!r} data source")
            self.assertTrue(panel.get("targets"), f"panel {panel.get('title')!r} has no queries")
            for target in panel["targets"]:
                self.assertEqual(target.get("datasource", panel["datasource"]),
                                 panel["datasource"], f"panel {panel.get('title')!r} target")
        ids = [panel.get("id") for panel in dashboard_panels(dashboard["panels"])]
        self.assertEqual(len(ids), len(set(ids)), f"duplicate panel ids {ids}")

    @unittest.skipUnless(os.path.exists(PROMTOOL), f"{PROMTOOL} is missing: run "
                         "scripts/install-deps.sh, which installs Debian's prometheus package")
    def test_dashboard_expressions_parse(self):
        # promtool parses every expression of a rules file, so each dashboard query becomes a
        # recording rule.
        rules = ["groups:", "  - name: dashboard", "    rules:"]
        for index, (_, expr) in enumerate(dashboard_expressions(load_dashboard())):
            rules.append(f"      - record: dashboard:expression_{index}")
            rules.append(f"        expr: {json.dumps(substitute_variables(expr))}")
        path = os.path.join(self.tempdir.name, "dashboard-rules.yml")
        with open(path, "w") as f:
            f.write("\n".join(rules) + "\n")
        result = subprocess.run([PROMTOOL, "check", "rules", path], capture_output=True,
                                timeout=120)
        self.assertEqual(result.returncode, 0,
                         f"promtool check rules: {result.stdout!r} {result.stderr!r}")


# ---- a real Prometheus server ------------------------------------------------------------------

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((harness.HOST, 0))
        return sock.getsockname()[1]


def stop_process(proc, timeout=30.0):
    """Stop proc with SIGTERM, or with SIGKILL if it has not exited after timeout seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)


class Prometheus:
    """Debian's prometheus on 127.0.0.1 with a temporary configuration and storage, scraping
    one target every second."""

    def __init__(self, folder, target_port):
        self.folder = folder
        self.config = os.path.join(folder, "prometheus.yml")
        with open(self.config, "w") as f:
            f.write("global:\n"
                    "  scrape_interval: 1s\n"
                    "  scrape_timeout: 1s\n"
                    "  evaluation_interval: 1s\n"
                    "scrape_configs:\n"
                    "  - job_name: onnxserve\n"
                    "    static_configs:\n"
                    f"      - targets: [\"{harness.HOST}:{target_port}\"]\n")
        self.log_path = os.path.join(folder, "prometheus.log")
        self.proc = None
        # The port is free when chosen but could be taken before prometheus binds it.
        for attempt in range(3):
            self.port = free_port()
            if self._start():
                return
        raise AssertionError("prometheus did not start; log:\n" + self.log())

    def _start(self):
        storage = os.path.join(self.folder, f"data-{self.port}")
        address = f"{harness.HOST}:{self.port}"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [PROMETHEUS, f"--config.file={self.config}", f"--storage.tsdb.path={storage}",
                 f"--web.listen-address={address}", f"--web.external-url=http://{address}/"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.folder)
        deadline = time.monotonic() + PROMETHEUS_WAIT_SECONDS
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if fetch(self.port, "GET", "/-/ready", timeout=5).status == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.2)
        stop_process(self.proc)
        raise AssertionError(f"prometheus not ready within {PROMETHEUS_WAIT_SECONDS} s; log:\n"
                             + self.log())

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-6000:]
        except OSError:
            return ""

    def api(self, path, **params):
        response = fetch(self.port, "GET", f"/api/v1/{path}?{urllib.parse.urlencode(params)}")
        if response.status != 200:
            raise AssertionError(f"GET /api/v1/{path} {params}: {response}")
        document = response.json()
        if document.get("status") != "success":
            raise AssertionError(f"GET /api/v1/{path} {params}: {document}")
        return document["data"]

    def query(self, expr, evaluation_time=None):
        """Run an instant query, at evaluation_time (Unix seconds) when given, and return the
        result vector as [(labels, value)]."""
        params = {"query": expr}
        if evaluation_time is not None:
            params["time"] = f"{evaluation_time:.3f}"
        data = self.api("query", **params)
        if data["resultType"] != "vector":
            raise AssertionError(f"query {expr!r} returned a {data['resultType']}: {data}")
        return [(series["metric"], float(series["value"][1])) for series in data["result"]]

    def targets(self):
        return self.api("targets")["activeTargets"]

    def wait_for(self, description, probe):
        """Call probe() until its result is not None, and return that result. Fail after
        PROMETHEUS_WAIT_SECONDS with the details the last probe returned."""
        deadline = time.monotonic() + PROMETHEUS_WAIT_SECONDS
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited while waiting for {description}; "
                                     "log:\n" + self.log())
            result, last = probe()
            if result is not None:
                return result
            time.sleep(0.5)
        raise AssertionError(f"no {description} within {PROMETHEUS_WAIT_SECONDS} s; last: "
                             f"{last}; targets: {self.targets()}; log:\n" + self.log())

    def stop(self):
        if self.proc is not None:
            stop_process(self.proc)


@unittest.skipUnless(os.path.exists(PROMETHEUS), f"{PROMETHEUS} is missing: run "
                     "scripts/install-deps.sh, which installs Debian's prometheus package")
class PrometheusScrapeTest(unittest.TestCase):
    """Prometheus scrapes onnxserve every second while requests run. The tests query what it
    stored at the time of the first scrape that counted every request."""

    maxDiff = None
    sent = 0
    complete_time = None

    @classmethod
    def setUpClass(cls):
        cls.tempdir = tempfile.TemporaryDirectory(prefix="oxs-prometheus-")
        cls.addClassCleanup(cls.tempdir.cleanup)
        repository = make_repository(os.path.join(cls.tempdir.name, "repo"), ["scale"])
        cls.server = harness.Server(["--model-repository", repository])
        cls.addClassCleanup(cls.stop_server)
        if cls.server.metrics_port is None:
            raise AssertionError("no metrics_port in the listening log line")

        folder = os.path.join(cls.tempdir.name, "prometheus")
        os.makedirs(folder)
        cls.prometheus = Prometheus(folder, cls.server.metrics_port)
        cls.addClassCleanup(cls.prometheus.stop)

        cls.prometheus.wait_for("first scrape of onnxserve", cls.probe_target_up)
        cls.sent = cls.send_traffic()
        cls.complete_time = cls.prometheus.wait_for("scrape that saw every request",
                                                    cls.probe_counter_complete)

    @classmethod
    def stop_server(cls):
        try:
            cls.server.stop(expected_code=0)
        finally:
            cls.server.kill()

    @classmethod
    def probe_target_up(cls):
        found = cls.prometheus.query('up{job="onnxserve"}')
        return (True if found and found[0][1] == 1 else None), found

    @classmethod
    def probe_counter_complete(cls):
        """Return a pair: the time of a scrape whose success counter equals the requests sent
        (None while there is none), and the query results."""
        found = cls.prometheus.query(
            'onnxserve_requests_total{model="scale",outcome="success"}')
        if len(found) == 1 and found[0][1] > cls.sent:
            raise AssertionError(f"counter {found} is above the {cls.sent} requests sent")
        if len(found) != 1 or found[0][1] != cls.sent:
            return None, found
        stamps = cls.prometheus.query(
            'timestamp(onnxserve_requests_total{model="scale",outcome="success"})')
        return (stamps[0][1] if len(stamps) == 1 else None), (found, stamps)

    @classmethod
    def send_traffic(cls):
        """Send scale requests from TRAFFIC_THREADS threads for TRAFFIC_SECONDS, each on a
        keep-alive connection, and return how many succeeded. Raise AssertionError if any
        request fails."""
        deadline = time.monotonic() + TRAFFIC_SECONDS
        successes = [0] * TRAFFIC_THREADS
        failures = []

        def worker(index):
            conn = cls.server.connection()
            try:
                count = 0
                while time.monotonic() < deadline and not failures:
                    x = scale_input(1 + count % 3, offset=index)
                    response = harness.send_request(conn, "POST", "/v2/models/scale/infer",
                                                    scale_body(x),
                                                    {"Content-Type": "application/json"})
                    if response.status != 200:
                        failures.append(f"thread {index} request {count}: {response}")
                        return
                    count += 1
                    successes[index] = count
            except Exception as error:  # reported by the main thread
                failures.append(f"thread {index}: {error!r}")
            finally:
                conn.close()

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(TRAFFIC_THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TRAFFIC_SECONDS + 300)
        if failures:
            raise AssertionError("traffic failed: " + "; ".join(failures))
        if sum(successes) == 0:
            raise AssertionError("no request succeeded")
        return sum(successes)

    def test_target_scraped_without_errors(self):
        targets = self.prometheus.targets()
        self.assertEqual(len(targets), 1, f"active targets {targets}")
        self.assertEqual(targets[0]["health"], "up", f"target {targets[0]}")
        self.assertEqual(targets[0]["lastError"], "", f"target {targets[0]}")

    def test_request_counter_labels_and_value(self):
        found = self.prometheus.query(
            'onnxserve_requests_total{model="scale",outcome="success"}', evaluation_time=self.complete_time)
        self.assertEqual(len(found), 1, f"series {found}")
        labels, value = found[0]
        self.assertEqual(value, self.sent, "successful requests stored by Prometheus")
        self.assertEqual(labels.get("model"), "scale", f"labels {labels}")
        self.assertEqual(labels.get("version"), "1", f"labels {labels}")
        self.assertEqual(labels.get("outcome"), "success", f"labels {labels}")
        self.assertEqual(labels.get("job"), "onnxserve", f"labels {labels}")
        self.assertEqual(labels.get("instance"),
                         f"{harness.HOST}:{self.server.metrics_port}", f"labels {labels}")

    def test_request_latency_quantile(self):
        expr = ("histogram_quantile(0.5, sum by (le) (rate("
                f'onnxserve_request_duration_seconds_bucket{{model="scale"}}[{RATE_WINDOW}])))')
        found = self.prometheus.query(expr, evaluation_time=self.complete_time)
        self.assertEqual(len(found), 1, f"{expr}: {found}")
        median = found[0][1]
        self.assertTrue(math.isfinite(median), f"median request duration {median}")
        self.assertGreater(median, 0, "median request duration")
        self.assertLess(median, 10, "median request duration, seconds")

    def test_dashboard_queries_return_series(self):
        expressions = dashboard_expressions(load_dashboard())
        for where, expr in expressions:
            query = substitute_variables(expr)
            found = self.prometheus.query(query, evaluation_time=self.complete_time)
            self.assertTrue(found, f"{where}: no series for {query!r}")


if __name__ == "__main__":
    unittest.main(verbosity=2)
