"""Shared helpers for the end-to-end tests: start the onnxserve binary, talk HTTP to it, and run
the in-process ONNX Runtime reference tool.

Standard library plus numpy, for /usr/bin/python3. Every server listens on 127.0.0.1 on a port it
picks itself (--http-port 0) and reports in its "HTTP server listening" log line, so test files
can run in parallel.

Environment (set by CTest): ONNXSERVE_BIN, ONNXSERVE_MODELS, ONNXSERVE_TEST_DATA, ORT_REFERENCE.
"""
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import numpy as np

HOST = "127.0.0.1"
LISTENING_MSG = "HTTP server listening"

# Text that means a sanitizer found a bug in the process that printed it.
SANITIZER_PATTERNS = [
    re.compile(r"ERROR: AddressSanitizer"),
    re.compile(r"runtime error:"),
    re.compile(r"LeakSanitizer"),
    re.compile(r"WARNING: ThreadSanitizer"),
]

# KServe v2 datatype names and their numpy element types.
NUMPY_DTYPES = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP32": np.float32,
    "FP64": np.float64,
}


def raise_open_file_limit():
    """Raise RLIMIT_NOFILE to the hard limit, so tests can hold hundreds of connections."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


raise_open_file_limit()


def env_path(name):
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"environment variable {name} is not set: run the tests through CTest")
    return value


def server_binary():
    return env_path("ONNXSERVE_BIN")


def models_dir():
    return env_path("ONNXSERVE_MODELS")


def test_data_dir():
    return env_path("ONNXSERVE_TEST_DATA")


def sanitizer_lines(lines):
    """Return the lines that contain a sanitizer report."""
    return [line for line in lines if any(p.search(line) for p in SANITIZER_PATTERNS)]


class ServerError(Exception):
    pass


class Server:
    """One onnxserve process on 127.0.0.1 with a port it picked itself.

    stderr is read by a thread for the whole life of the process: each line is kept in `lines`,
    and each line that parses as a JSON object also in `records`.
    """

    def __init__(self, args, start_timeout=120.0, env=None):
        self.args = list(args)
        self.lines = []
        self.records = []
        self.stdout = b""
        self.port = None
        self.metrics_port = None  # None when the server runs with --metrics-port -1
        self.signaled = False  # set once the test sends a signal
        self._cond = threading.Condition()
        self._eof = False
        command = [server_binary(), "--host", HOST, "--http-port", "0", "--metrics-port",
                   "0"] + self.args
        self.command = command
        self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env)
        self._stderr_thread = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr_thread.start()
        self._stdout_thread = threading.Thread(target=self._read_stdout, daemon=True)
        self._stdout_thread.start()
        record = self.wait_for_log(lambda r: r.get("msg") == LISTENING_MSG, start_timeout)
        if record is None:
            self.kill()
            raise ServerError(f"server did not log {LISTENING_MSG!r} within {start_timeout} s; "
                              f"command {command}; exit code {self.proc.returncode}; stderr:\n"
                              + self.stderr_text())
        if "http_port" not in record:
            self.kill()
            raise ServerError(f"log line {record} has no http_port field")
        self.port = int(record["http_port"])
        if int(record.get("metrics_port", -1)) > 0:
            self.metrics_port = int(record["metrics_port"])
        self.pid = self.proc.pid

    def _read_stderr(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            record = None
            if line.startswith("{"):
                try:
                    parsed = json.loads(line)
                    if isinstance(parsed, dict):
                        record = parsed
                except ValueError:
                    pass
            with self._cond:
                self.lines.append(line)
                if record is not None:
                    self.records.append(record)
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def _read_stdout(self):
        self.stdout = self.proc.stdout.read()

    def stderr_text(self):
        with self._cond:
            return "\n".join(self.lines)

    def wait_for_log(self, predicate, timeout=10.0, start=0):
        """Wait for a JSON log record (from index start on) for which predicate is true."""
        deadline = time.monotonic() + timeout
        index = start
        with self._cond:
            while True:
                while index < len(self.records):
                    record = self.records[index]
                    index += 1
                    if predicate(record):
                        return record
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._eof:
                    return None
                self._cond.wait(remaining)

    def find_logs(self, **fields):
        """Return the records whose fields equal every given value."""
        with self._cond:
            return [r for r in self.records if all(r.get(k) == v for k, v in fields.items())]

    def sanitizer_reports(self):
        with self._cond:
            return sanitizer_lines(self.lines)

    def thread_count(self):
        return len(os.listdir(f"/proc/{self.pid}/task"))

    def running(self):
        return self.proc.poll() is None

    def signal(self, signum):
        self.signaled = True
        if self.running():
            self.proc.send_signal(signum)

    def wait(self, timeout=60.0):
        """Wait for the process to exit and for stderr to end; return the exit code."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise ServerError(f"server did not exit within {timeout} s; stderr:\n"
                              + self.stderr_text())
        self._stderr_thread.join(10)
        self._stdout_thread.join(10)
        self._close_pipes()
        return code

    def _close_pipes(self):
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None and not self._stderr_thread.is_alive() \
                    and not self._stdout_thread.is_alive():
                pipe.close()

    def stop(self, expected_code=0, timeout=60.0):
        """Send SIGTERM, wait, and check the exit code and the absence of sanitizer reports."""
        self.signal(signal.SIGTERM)
        code = self.wait(timeout)
        self.check_clean()
        if code != expected_code:
            raise ServerError(f"server exit code {code}, expected {expected_code}; stderr:\n"
                              + self.stderr_text())
        return code

    def check_clean(self):
        reports = self.sanitizer_reports()
        if reports:
            raise ServerError("sanitizer reports in server stderr:\n" + self.stderr_text())

    def kill(self):
        if self.running():
            self.proc.kill()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            return
        self._stderr_thread.join(10)
        self._stdout_thread.join(10)
        self._close_pipes()

    # HTTP helpers ---------------------------------------------------------------------------

    def connection(self, timeout=60.0):
        return http.client.HTTPConnection(HOST, self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=60.0):
        """Send one request on a new connection and return a Response."""
        conn = self.connection(timeout)
        try:
            return send_request(conn, method, path, body, headers)
        finally:
            conn.close()

    def get(self, path, headers=None):
        return self.request("GET", path, headers=headers)

    def post_json(self, path, document, headers=None, timeout=60.0):
        body = json.dumps(document).encode() if not isinstance(document, (bytes, str)) else document
        if isinstance(body, str):
            body = body.encode()
        all_headers = {"Content-Type": "application/json"}
        all_headers.update(headers or {})
        return self.request("POST", path, body, all_headers, timeout)

    def infer(self, model, inputs, outputs=None, request_id=None, version=None, timeout=120.0):
        """POST a KServe v2 infer request. inputs: list of (name, datatype, numpy array)."""
        document = {"inputs": [infer_input(name, datatype, array)
                               for name, datatype, array in inputs]}
        if outputs is not None:
            document["outputs"] = [{"name": name} for name in outputs]
        if request_id is not None:
            document["id"] = request_id
        path = f"/v2/models/{model}"
        if version is not None:
            path += f"/versions/{version}"
        return self.post_json(path + "/infer", document, timeout=timeout)

    def raw(self, data, timeout=30.0, shutdown_write=False):
        """Send raw bytes on a new connection and return everything read until the server closes
        the connection or timeout passes."""
        with socket.create_connection((HOST, self.port), timeout=timeout) as sock:
            sock.sendall(data)
            if shutdown_write:
                sock.shutdown(socket.SHUT_WR)
            return read_until_closed(sock, timeout)


class Response:
    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers  # http.client.HTTPMessage, case-insensitive
        self.body = body

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError as error:
            raise AssertionError(f"response body is not JSON ({error}): {self.body[:2000]!r}")

    def header(self, name):
        return self.headers.get(name)

    def __repr__(self):
        body = self.body if len(self.body) <= 2000 else self.body[:2000] + b"..."
        return f"<HTTP {self.status} {self.reason} {dict(self.headers)} {body!r}>"


def send_request(conn, method, path, body=None, headers=None):
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    return Response(response.status, response.reason, response.headers, data)


class _NonClosingReader:
    """A buffered reader that ignores close(), because HTTPResponse closes its file after each
    complete response while the next response is still to be read from the same buffer."""

    def __init__(self, reader):
        self._reader = reader

    def close(self):
        pass

    def __getattr__(self, name):
        return getattr(self._reader, name)


class _SharedFileSocket:
    """Hand http.client.HTTPResponse one buffered reader for several responses on one socket."""

    def __init__(self, reader):
        self._reader = _NonClosingReader(reader)

    def makefile(self, mode, *args, **kwargs):
        return self._reader


def read_responses(sock, count, timeout=30.0):
    """Read count HTTP responses from a socket in order, with http.client's response parser."""
    sock.settimeout(timeout)
    reader = sock.makefile("rb")
    responses = []
    for _ in range(count):
        response = http.client.HTTPResponse(_SharedFileSocket(reader))
        response.begin()
        body = response.read()
        responses.append(Response(response.status, response.reason, response.headers, body))
    return responses


def read_until_closed(sock, timeout):
    sock.settimeout(timeout)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def parse_raw_response(data):
    """Parse the first HTTP response in data (bytes read from a socket)."""

    class _Bytes:
        def __init__(self, payload):
            import io
            self._file = io.BufferedReader(io.BytesIO(payload))

        def makefile(self, mode, *args, **kwargs):
            return self._file

    response = http.client.HTTPResponse(_Bytes(data))
    response.begin()
    body = response.read()
    return Response(response.status, response.reason, response.headers, body)


def json_data(array, datatype):
    """Convert a numpy array to the flat JSON list a KServe v2 request carries."""
    flat = np.asarray(array).reshape(-1)
    if datatype == "BOOL":
        return [bool(v) for v in flat]
    if datatype in ("FP32", "FP64"):
        # float(v) of a float32 is exact, and its repr is a decimal that strtof maps back to v.
        return [float(v) for v in flat]
    return [int(v) for v in flat]


def infer_input(name, datatype, array):
    array = np.asarray(array)
    return {"name": name, "shape": list(array.shape), "datatype": datatype,
            "data": json_data(array, datatype)}


def output_array(output):
    """Convert one KServe v2 response output to a numpy array of its datatype and shape."""
    datatype = output["datatype"]
    dtype = NUMPY_DTYPES[datatype]
    data = output["data"]
    if datatype in ("INT64", "UINT64", "INT32", "UINT32", "INT16", "UINT16", "INT8", "UINT8"):
        # Through Python ints, so 64-bit values stay exact.
        values = np.array([int(v) for v in flatten(data)], dtype=dtype)
    else:
        values = np.array(list(flatten(data)), dtype=dtype)
    return values.reshape(output["shape"])


def flatten(data):
    if isinstance(data, list):
        for item in data:
            yield from flatten(item)
    else:
        yield data


def run_reference(model_path, inputs, workdir=None, extra_args=()):
    """Run ort_reference on model_path with inputs [(name, datatype, numpy array)].

    Returns {output name: (datatype, numpy array)}.
    """
    tool = env_path("ORT_REFERENCE")
    with tempfile.TemporaryDirectory(prefix="oxs-ref-", dir=workdir) as folder:
        args = [tool] + list(extra_args) + [model_path, folder]
        for index, (name, datatype, array) in enumerate(inputs):
            path = os.path.join(folder, f"input{index}.raw")
            np.ascontiguousarray(array, dtype=NUMPY_DTYPES[datatype]).astype(
                np.dtype(NUMPY_DTYPES[datatype]).newbyteorder("<")).tofile(path)
            dims = "x".join(str(d) for d in np.shape(array))
            args.append(f"{name}:{datatype}:{dims}:{path}")
        result = subprocess.run(args, capture_output=True, timeout=300)
        stderr = result.stderr.decode("utf-8", "replace")
        if result.returncode != 0 or sanitizer_lines(stderr.splitlines()):
            raise AssertionError(f"ort_reference failed with exit code {result.returncode}:\n"
                                 f"{' '.join(args)}\n{stderr}")
        with open(os.path.join(folder, "outputs.json")) as f:
            index = json.load(f)
        outputs = {}
        for entry in index["outputs"]:
            dtype = np.dtype(NUMPY_DTYPES[entry["datatype"]]).newbyteorder("<")
            values = np.fromfile(os.path.join(folder, entry["file"]), dtype=dtype)
            outputs[entry["name"]] = (entry["datatype"], values.reshape(entry["shape"]))
        return outputs


def compare_arrays(name, actual, expected, rtol=1e-6, atol=1e-9):
    """Return "" when actual equals expected (exact for integers and bools, within rtol relative
    with an absolute floor atol for floats), otherwise a message with both sides."""
    if actual.shape != expected.shape:
        return f"{name}: shape {list(actual.shape)}, expected {list(expected.shape)}"
    if actual.dtype != expected.dtype:
        return f"{name}: dtype {actual.dtype}, expected {expected.dtype}"
    if np.issubdtype(expected.dtype, np.floating):
        a = actual.astype(np.float64)
        e = expected.astype(np.float64)
        same_nan = np.isnan(a) & np.isnan(e)
        bad = ~same_nan & ~(np.abs(a - e) <= np.maximum(rtol * np.abs(e), atol))
    else:
        bad = actual != expected
    if not np.any(bad):
        return ""
    positions = np.argwhere(bad)
    lines = [f"{name}: {len(positions)} of {expected.size} elements differ"]
    for position in positions[:10]:
        index = tuple(int(i) for i in position)
        lines.append(f"  at {list(index)}: server {actual[index]!r}, reference {expected[index]!r}")
    return "\n".join(lines)


class ServerTestCase(unittest.TestCase):
    """A TestCase whose servers are stopped (SIGTERM, exit code 0, no sanitizer reports) at the
    end of each test unless the test stopped them itself."""

    maxDiff = None

    def start_server(self, args, **kwargs):
        server = Server(args, **kwargs)
        self.addCleanup(self._finish_server, server)
        return server

    def _finish_server(self, server):
        if server.running():
            try:
                server.stop(expected_code=0)
            finally:
                server.kill()
            return
        code = server.wait()
        server.check_clean()
        if not server.signaled:
            raise ServerError(f"server exited with code {code} before the test stopped it; "
                              "stderr:\n" + server.stderr_text()[-5000:])

    def assertStatus(self, response, status, context=""):
        """Check the HTTP status: status is one code or a tuple of accepted codes."""
        accepted = status if isinstance(status, tuple) else (status,)
        if response.status not in accepted:
            expected = " or ".join(str(code) for code in accepted)
            self.fail(f"{context}: HTTP {response.status}, expected {expected}; body "
                      f"{response.body[:2000]!r}")

    def assertErrorMentions(self, response, status, phrases, context=""):
        """Check the status, a JSON body {"error": text}, and that text contains every phrase
        (case-insensitive). A phrase given as a tuple is satisfied by any of its members."""
        self.assertStatus(response, status, context)
        body = response.json()
        if not isinstance(body, dict) or not isinstance(body.get("error"), str):
            self.fail(f"{context}: error body {body!r} is not {{\"error\": \"...\"}}")
        text = body["error"]
        for phrase in phrases:
            choices = phrase if isinstance(phrase, tuple) else (phrase,)
            if not any(choice.lower() in text.lower() for choice in choices):
                self.fail(f"{context}: error {text!r} does not mention "
                          + " or ".join(repr(choice) for choice in choices))
        return text


def link_or_copy(source, target):
    """Hard-link source to target, or copy it across file systems. A symbolic link would leave
    the model repository, which the server refuses."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def make_repository(folder, models):
    """Build a model repository in folder: models maps NAME to a model file path."""
    for name, path in models.items():
        version = os.path.join(folder, name, "1")
        os.makedirs(version, exist_ok=True)
        link_or_copy(path, os.path.join(version, "model.onnx"))
    return folder


# The slow test model: x [-1] float, n [1] int64; runs n rounds of Sin over x. A small x keeps the
# JSON decoding short next to the compute time, so a request body is read soon after it is sent.
SLOW_ELEMENTS = 20000


def slow_body(rounds, elements=SLOW_ELEMENTS):
    """JSON body for the slow model. x is all zeros, so the JSON stays small for its size."""
    data = "[" + ",".join(["0"] * elements) + "]"
    return ('{"inputs": [{"name": "x", "shape": [%d], "datatype": "FP32", "data": %s}, '
            '{"name": "n", "shape": [1], "datatype": "INT64", "data": [%d]}]}'
            % (elements, data, rounds)).encode()


def calibrate_slow_rounds(server, seconds, model="slow"):
    """Return the number of rounds that makes one slow-model request compute for about
    seconds on this machine, measured from the compute_us of a trial request's log line."""
    rounds = 20
    for attempt in range(4):
        request_id = f"calibrate-{attempt}"
        response = server.post_json(f"/v2/models/{model}/infer", slow_body(rounds),
                                    headers={"X-Request-ID": request_id})
        if response.status != 200:
            raise AssertionError(f"calibration request failed: {response}")
        record = server.wait_for_log(lambda r: r.get("request_id") == request_id
                                     and "compute_us" in r, 10)
        if record is None:
            raise AssertionError("no request log line with compute_us for the calibration request")
        compute_us = max(int(record["compute_us"]), 1)
        if compute_us >= 100000:
            break
        rounds *= 8
    return max(1, int(rounds * seconds * 1e6 / compute_us))
