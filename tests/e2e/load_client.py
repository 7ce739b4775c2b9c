"""Load-test helpers for the overload and shutdown tests.

They provide an asyncio HTTP/1.1 client that keeps many connections open without a thread each,
an open-loop request schedule and a resident-memory sampler. They also build requests for the
slow test models and compute the outputs a test checks them against.

Standard library plus numpy, for /usr/bin/python3. Everything talks to 127.0.0.1 only.
"""
import asyncio
import http.client
import io
import json
import os
import re
import threading
import time

import numpy as np

import harness

# Elements of x in each slow-model request. The run time comes from the round count, so a short
# x keeps both the JSON decoding and the reference computation small.
ELEMENTS = 64

# Upper bound on any single exchange in these tests, so that a hang fails the test in place of
# blocking it. It is not a latency target.
EXCHANGE_TIMEOUT = 120.0

SANITIZER_MARKERS = {"asan": b"AddressSanitizer", "tsan": b"ThreadSanitizer"}


def sanitizer_build():
    """Return "asan", "tsan" or "none" for the server binary under test.

    CTest sets ONNXSERVE_SANITIZER. Without it, as in a run by hand, the binary is searched for
    the name of a sanitizer runtime, which a release build does not contain.
    """
    value = os.environ.get("ONNXSERVE_SANITIZER")
    if value:
        return value
    with open(harness.server_binary(), "rb") as binary:
        data = binary.read()
    for name, marker in SANITIZER_MARKERS.items():
        if marker in data:
            return name
    return "none"


def resident_bytes(pid):
    """Return the VmRSS of a process in bytes, from /proc/PID/status."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"/proc/{pid}/status has no VmRSS line")


class MemorySampler(threading.Thread):
    """Samples a process's VmRSS every interval seconds until stop(), keeping the maximum."""

    def __init__(self, pid, interval=0.02):
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.samples = 0
        self.max_bytes = 0
        self._stop_event = threading.Event()

    def run(self):
        while not self._stop_event.is_set():
            try:
                value = resident_bytes(self.pid)
            except OSError:
                return
            self.max_bytes = max(self.max_bytes, value)
            self.samples += 1
            self._stop_event.wait(self.interval)

    def stop(self):
        self._stop_event.set()
        self.join(10)


# ---- requests for the slow models ----------------------------------------------------------


def slow_input(index):
    """Return the x of request number index: ELEMENTS distinct values in [0.002, 0.02).

    Repeated Sin maps x to about (1/x**2 + rounds/3) ** -0.5, so small inputs keep outputs of
    different requests apart after many rounds, and a response sent to the wrong request shows.
    """
    start = 0.002 + 0.00001 * index
    return (start + 0.0001 * np.arange(ELEMENTS)).astype(np.float32)


def expected_slow_output(inputs, rounds):
    """Return Sin applied rounds times to each array in inputs, in float32 as ONNX Runtime runs
    it, computed for all arrays at once."""
    if not inputs:
        return []
    values = np.stack(inputs).astype(np.float32)
    for _ in range(rounds):
        values = np.sin(values)
    return list(values)


def slow_document(x, rounds, batched=False):
    """Return the JSON request for the slow model, or for slow_batched with one row."""
    if batched:
        inputs = [{"name": "x", "shape": [1, len(x)], "datatype": "FP32",
                   "data": [float(v) for v in x]},
                  {"name": "n", "shape": [1], "datatype": "INT64", "data": [rounds]}]
    else:
        inputs = [{"name": "x", "shape": [len(x)], "datatype": "FP32",
                   "data": [float(v) for v in x]},
                  {"name": "n", "shape": [1], "datatype": "INT64", "data": [rounds]}]
    return json.dumps({"inputs": inputs}).encode()


def http_request(method, path, body=b"", headers=None):
    """Return the bytes of one HTTP/1.1 request with a Content-Length."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body or method == "POST":
        lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def check_slow_reply(reply, expected, rtol=1e-5):
    """Return "" when a 200 reply carries expected as output y, otherwise what differs."""
    document = reply.json()
    outputs = document.get("outputs") if isinstance(document, dict) else None
    if not outputs or outputs[0].get("name") != "y":
        return f"reply has no output y: {reply.body[:300]!r}"
    actual = np.array(list(harness.flatten(outputs[0]["data"])), dtype=np.float32)
    if actual.shape != expected.reshape(-1).shape:
        return f"output y has {actual.size} elements, expected {expected.size}"
    error = np.max(np.abs(actual - expected.reshape(-1)) / np.abs(expected.reshape(-1)))
    if not error <= rtol:
        return f"output y differs from the reference by {error:.3g} relative"
    return ""


# ---- asyncio HTTP client -------------------------------------------------------------------


class ClosedWithoutReply(Exception):
    """The server closed the connection before sending any byte of a response."""


class PartialReply(Exception):
    """The server closed the connection in the middle of a response."""


STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) ?([^\r\n]*)")


class Connection:
    """A keep-alive HTTP/1.1 connection to 127.0.0.1 with at most one request outstanding."""

    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer
        self.reusable = True

    @classmethod
    async def open(cls, port):
        reader, writer = await asyncio.open_connection(harness.HOST, port)
        return cls(reader, writer)

    async def send(self, data):
        self.writer.write(data)
        await self.writer.drain()

    async def read_reply(self):
        """Read one response and return it as a harness.Response. Raises ClosedWithoutReply when
        the connection ends (EOF or reset) before its first byte, and PartialReply when it ends
        in the middle."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as error:
            self.reusable = False
            if error.partial:
                raise PartialReply(f"connection closed after {error.partial[:200]!r}")
            raise ClosedWithoutReply("connection closed before any response byte")
        except ConnectionResetError:
            self.reusable = False
            raise ClosedWithoutReply("connection reset before any response byte")
        match = STATUS_LINE.match(head)
        if match is None:
            self.reusable = False
            raise PartialReply(f"not an HTTP/1.1 status line: {head[:200]!r}")
        # http.client's parser gives case-insensitive names; the blank line in head ends it.
        headers = http.client.parse_headers(io.BytesIO(head.split(b"\r\n", 1)[1]))
        length = int(headers.get("content-length", "0"))
        try:
            body = await self.reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionResetError) as error:
            self.reusable = False
            raise PartialReply(f"connection closed inside a {length}-byte body: {error!r}")
        if headers.get("connection", "").lower() == "close":
            self.reusable = False
        return harness.Response(int(match.group(1)), match.group(2).decode("latin-1"), headers,
                                body)

    async def wait_closed_without_reply(self, timeout):
        """Return "" when the server closes the connection without sending anything within
        timeout seconds, otherwise a description of what happened instead."""
        try:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
        except asyncio.TimeoutError:
            return f"the connection was still open after {timeout} s"
        except ConnectionResetError:
            return ""
        if data:
            return f"the server sent {data[:200]!r}"
        return ""

    def close(self):
        self.reusable = False
        self.writer.close()


class Outcome:
    """What happened to one request of a load: the reply, or the error that ended it."""

    def __init__(self, index, scheduled):
        self.index = index
        self.scheduled = scheduled  # seconds after the load started
        self.sent = None  # time.monotonic() once the request bytes were written
        self.finished = None  # time.monotonic() when the reply or the error came
        self.reply = None
        self.error = None

    @property
    def latency(self):
        return self.finished - self.sent


async def exchange(port, payload, outcome, pool=None, keep_open=None):
    """Send payload on an idle connection from pool (or a new one) and read the reply into
    outcome. Afterwards the connection goes back to pool when it can be reused, or into keep_open
    when keep_open is a list, so that it stays open until the caller closes it, or is closed."""
    conn = pool.pop() if pool else None
    try:
        if conn is None:
            conn = await Connection.open(port)
        outcome.sent = time.monotonic()
        await conn.send(payload)
        outcome.reply = await asyncio.wait_for(conn.read_reply(), EXCHANGE_TIMEOUT)
    except (OSError, ClosedWithoutReply, PartialReply, asyncio.TimeoutError) as error:
        outcome.error = error
    finally:
        outcome.finished = time.monotonic()
        if outcome.sent is None:
            outcome.sent = outcome.finished
    if conn is None:
        return
    if keep_open is not None:
        keep_open.append(conn)
    elif outcome.error is None and conn.reusable and pool is not None:
        pool.append(conn)
    else:
        conn.close()


async def open_loop(port, payloads, rate):
    """Send payloads[i] at i / rate seconds after the start, whatever the replies, over a pool of
    keep-alive connections that grows whenever no connection is idle. Returns one Outcome per
    payload once every request has its reply or error."""
    pool = []
    tasks = []
    outcomes = []
    loop = asyncio.get_running_loop()
    start = loop.time()
    for index, payload in enumerate(payloads):
        delay = start + index / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        outcome = Outcome(index, index / rate)
        outcomes.append(outcome)
        tasks.append(asyncio.ensure_future(exchange(port, payload, outcome, pool)))
    await asyncio.gather(*tasks)
    for conn in pool:
        conn.close()
    return outcomes


async def all_at_once(port, payloads):
    """Open one connection per payload at the same time, send each payload at once, and read
    each reply. Every connection stays open until all have their reply or error, so the
    server holds all of them at the same time. Returns one Outcome per payload."""
    outcomes = [Outcome(index, 0.0) for index in range(len(payloads))]
    keep_open = []
    try:
        await asyncio.gather(*(exchange(port, payload, outcome, keep_open=keep_open)
                               for payload, outcome in zip(payloads, outcomes)))
    finally:
        for conn in keep_open:
            conn.close()
    return outcomes


def calibrate_rounds(server, seconds, model="slow", batched=False):
    """Return the round count that makes one slow-model request compute for about seconds on
    this machine, from the compute_us field of trial requests' log lines."""
    rounds = 1000
    compute_us = 1
    for attempt in range(4):
        request_id = f"calibrate-{model}-{attempt}"
        body = slow_document(slow_input(0), rounds, batched)
        response = server.post_json(f"/v2/models/{model}/infer", body,
                                    headers={"X-Request-ID": request_id})
        if response.status != 200:
            raise AssertionError(f"calibration request failed: {response}")
        record = server.wait_for_log(lambda r: r.get("request_id") == request_id
                                     and "compute_us" in r, 10)
        if record is None:
            raise AssertionError("no request log line with compute_us for " + request_id)
        compute_us = max(int(record["compute_us"]), 1)
        if compute_us >= 50000:
            break
        rounds *= 8
    return max(1, int(rounds * seconds * 1e6 / compute_us))


def run(coroutine):
    """Run a coroutine on a new event loop and return its result."""
    return asyncio.run(coroutine)
