#!/usr/bin/python3
"""The model repository end to end.

Covers the layout (versions, ignored folders, invalid names, a name in two repositories,
symlinks), version policies and the per-version ready endpoint. Also covers the repository API
(index, load, unload), strict readiness, the three model control modes and SIGHUP. Hot reload
must not fail a request under load, and resident memory must stay bounded over 200 load and
unload cycles.

The test models are generated here with onnx.helper: model "add" versions compute y = x + k on
x FP32 [batch, 2], with k equal to the version number, so each response shows which version ran.
"""
import functools
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

OPSET = 13

# Maximum wait for the server to apply a change (a poll, a SIGHUP, an unload). Generous, because
# a sanitizer build on a loaded two-core machine is many times slower than a release build.
CHANGE_TIMEOUT_S = 90.0

# Allowed growth of VmRSS between cycle 20 and cycle 200 of the load and unload loop. The model
# of that test carries a 1 MiB weight. Each session of it added about 1.5 MiB of VmRSS, measured
# with ONNX Runtime 1.29 in a release build. A session leaked per cycle would therefore grow
# VmRSS by about 270 MiB over the loop. Malloc arenas and caches that settle during the first
# 20 cycles do not count.
RSS_GROWTH_LIMIT_KIB = 32 * 1024
MEMORY_CYCLES = 200
MEMORY_BASELINE_CYCLE = 20
MEMORY_WEIGHT_ELEMENTS = 256 * 1024

# Phrases in the error of a request to a model that is unloading, unloaded or never loaded.
NOT_SERVING_PHRASES = ("unloading", "unloaded", "not loaded")

# Markers of a sanitizer runtime inside an instrumented binary (clang links it statically).
SANITIZER_SYMBOLS = {
    b"__asan_init": "AddressSanitizer",
    b"__tsan_init": "ThreadSanitizer",
    b"__msan_init": "MemorySanitizer",
}


@functools.lru_cache(maxsize=None)
def add_model_bytes(k, input_name="x", padding=0, weight_elements=0):
    """Return a serialized model computing y = input + k on FP32 [batch, 2].

    padding adds that many bytes of doc string, to make a file large enough to write in pieces.
    weight_elements > 0 also adds the sum of a zero weight of that many floats, so that a
    session keeps the weight in memory when graph optimizations are off.
    """
    initializers = [numpy_helper.from_array(np.array(k, dtype=np.float32), "k")]
    nodes = [helper.make_node("Add", [input_name, "k"], ["y" if not weight_elements else "t"])]
    if weight_elements:
        initializers.append(numpy_helper.from_array(
            np.zeros(weight_elements, dtype=np.float32), "weight"))
        nodes.append(helper.make_node("ReduceSum", ["weight"], ["weight_sum"], keepdims=0))
        nodes.append(helper.make_node("Add", ["t", "weight_sum"], ["y"]))
    graph = helper.make_graph(
        nodes, f"add_{k}",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.producer_name = "onnxserve-tests"
    model.producer_version = "1"
    if padding:
        model.doc_string = "p" * padding
    onnx.checker.check_model(model)
    return model.SerializeToString()


BROKEN_MODEL = b"this is not an ONNX model\n"


def sanitizer_in(server):
    """Return the name of the sanitizer the server runs under, or None."""
    with open(harness.server_binary(), "rb") as f:
        binary = f.read()
    for symbol, name in SANITIZER_SYMBOLS.items():
        if symbol in binary:
            return name
    with open(f"/proc/{server.pid}/maps") as f:
        maps = f.read()
    for library in ("libasan", "libtsan", "libmsan", "libclang_rt.asan", "libclang_rt.tsan"):
        if library in maps:
            return library
    return None


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS line in /proc/{pid}/status")


def run_binary(args, timeout=60):
    """Run the binary with args on 127.0.0.1 until it exits; return (exit code, stderr text)."""
    command = [harness.server_binary(), "--host", harness.HOST, "--http-port", "0",
               "--metrics-port", "0"] + args
    try:
        result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True,
                                timeout=timeout)
    except subprocess.TimeoutExpired as error:
        stderr = (error.stderr or b"").decode("utf-8", "replace")
        raise AssertionError(f"{command} still ran after {timeout} s; stderr:\n{stderr}")
    return result.returncode, result.stderr.decode("utf-8", "replace")


def add_input(rows=1, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((rows, 2), dtype=np.float32) * 100 - 50).astype(np.float32)


def add_body(x, input_name="x"):
    return json.dumps({"inputs": [harness.infer_input(input_name, "FP32", x)]}).encode()


def add_answer_error(status, body, x, expected_version=None):
    """Return "" when a response of the add model is right for input x, else what is wrong.

    The output must equal x + k for the k of the version named in model_version."""
    if status != 200:
        return f"HTTP {status}: {body[:500]!r}"
    try:
        document = json.loads(body)
        version = int(document["model_version"])
        y = harness.output_array(document["outputs"][0])
    except (ValueError, KeyError, IndexError, TypeError) as error:
        return f"malformed response ({error!r}): {body[:500]!r}"
    if expected_version is not None and version != expected_version:
        return f"model_version {version}, expected {expected_version}"
    expected = x + np.float32(version)
    if y.shape != expected.shape or not np.array_equal(y, expected):
        return f"output {y.tolist()} for x {x.tolist()} is not x + {version}"
    return ""


def leaves_repository(reason):
    """Return True when a state reason reports a link that leaves the repository."""
    text = reason.lower()
    return "link" in text and any(word in text for word in ("leave", "outside"))


def answer_version(response):
    return int(response.json()["model_version"])


class RepositoryTestCase(harness.ServerTestCase):
    """A temporary folder per test with a repository folder `repo` in it, and helpers to build
    versions, send repository API requests and wait for the server to apply changes."""

    def setUp(self):
        self.tempdir = tempfile.TemporaryDirectory(prefix="oxs-repository-")
        self.addCleanup(self.tempdir.cleanup)
        self.root = self.tempdir.name
        self.repo = os.path.join(self.root, "repo")
        os.makedirs(self.repo)

    # Repository files ------------------------------------------------------------------------

    def write_version(self, name, version, data, repo=None):
        folder = os.path.join(repo or self.repo, name, str(version))
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "model.onnx"), "wb") as f:
            f.write(data)
        return folder

    def add_versions(self, name, versions, repo=None):
        for version in versions:
            self.write_version(name, version, add_model_bytes(version), repo)

    def publish_version(self, name, version, data):
        """Publish a version the safe way: write a dot-named folder, then rename it."""
        staging = os.path.join(self.repo, name, f".tmp-{version}")
        os.makedirs(staging)
        with open(os.path.join(staging, "model.onnx"), "wb") as f:
            f.write(data)
        os.rename(staging, os.path.join(self.repo, name, str(version)))

    def remove_version(self, name, version):
        """Remove a version folder at once: rename it out of the repository, then delete it."""
        removed = os.path.join(self.root, f"removed-{name}-{version}")
        os.rename(os.path.join(self.repo, name, str(version)), removed)
        shutil.rmtree(removed)

    def write_config(self, name, config, repo=None):
        """Replace NAME/config.json in one rename, so no scan reads a half-written file."""
        staging = os.path.join(self.root, f"config-{name}.json")
        with open(staging, "w") as f:
            json.dump(config, f)
        os.rename(staging, os.path.join(repo or self.repo, name, "config.json"))

    # Repository API --------------------------------------------------------------------------

    def index(self, server, body=b""):
        response = server.request("POST", "/v2/repository/index", body,
                                  {"Content-Type": "application/json"} if body else {})
        self.assertStatus(response, 200, f"POST /v2/repository/index {body!r}")
        entries = response.json()
        self.assertIsInstance(entries, list, f"index {entries!r}")
        return entries

    def entries_of(self, server, name):
        return [entry for entry in self.index(server) if entry["name"] == name]

    def versions_in_state(self, server, name, state):
        return sorted(int(entry["version"]) for entry in self.entries_of(server, name)
                      if entry["state"] == state and "version" in entry)

    def entry(self, server, name, version=None):
        """Return the index entry of name (and version, a number), or None."""
        for item in self.entries_of(server, name):
            if version is None and "version" not in item:
                return item
            if version is not None and item.get("version") == str(version):
                return item
        return None

    def control(self, server, name, action, body=b""):
        path = f"/v2/repository/models/{name}/{action}"
        headers = {"Content-Type": "application/json"} if body else {}
        return server.request("POST", path, body, headers)

    def load(self, server, name, body=b""):
        response = self.control(server, name, "load", body)
        self.assertStatus(response, 200, f"load {name}")
        self.assertEqual(response.json(), {}, f"load {name} body")
        return response

    def unload(self, server, name, body=b""):
        response = self.control(server, name, "unload", body)
        self.assertStatus(response, 200, f"unload {name}")
        self.assertEqual(response.json(), {}, f"unload {name} body")
        return response

    # Waiting and checking --------------------------------------------------------------------

    def wait_for(self, server, condition, description, timeout=CHANGE_TIMEOUT_S):
        """Call condition every 0.1 s until it returns a true value; fail after timeout."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                self.fail(f"timed out after {timeout} s waiting for {description}; index "
                          f"{self.index(server)}; server log tail:\n"
                          + server.stderr_text()[-4000:])
            time.sleep(0.1)

    def wait_ready_versions(self, server, name, versions, timeout=CHANGE_TIMEOUT_S):
        self.wait_for(server, lambda: self.versions_in_state(server, name, "READY") == versions,
                      f"READY versions {versions} of {name}", timeout)

    def wait_loading_done(self, server):
        """Wait until no index entry is LOADING or UNLOADING."""
        self.wait_for(server, lambda: all(entry["state"] not in ("LOADING", "UNLOADING")
                                          for entry in self.index(server)),
                      "no LOADING or UNLOADING entry")

    def check_add(self, server, name, version=None, expected_version=None, seed=0,
                  input_name="x"):
        """Send one request to an add model, check the response and return its model_version."""
        x = add_input(2, seed)
        path = f"/v2/models/{name}" + (f"/versions/{version}" if version is not None else "")
        response = server.post_json(path + "/infer", add_body(x, input_name))
        error = add_answer_error(response.status, response.body, x, expected_version)
        self.assertEqual(error, "", f"POST {path}/infer")
        return answer_version(response)

    def assertNotServing(self, response, context):
        self.assertErrorMentions(response, (503, 404), [NOT_SERVING_PHRASES], context)

    def ready_status(self, server):
        return server.get("/v2/health/ready").status


class LayoutTest(RepositoryTestCase):
    def test_version_folders_and_ignored_names(self):
        self.add_versions("add", [2, 9, 10])
        # Not versions: a word, a leading zero, a sign, zero. A dot folder contains a higher
        # "version" that must not load, and its name must not be logged.
        for folder in ("draft", "007", "+11", "0"):
            self.write_version("add", folder, add_model_bytes(50))
        self.write_version("add", ".staging-12", add_model_bytes(12))
        self.write_config("add", {"version_policy": {"all": {}}})
        server = self.start_server(["--model-repository", self.repo])

        entries = self.entries_of(server, "add")
        self.assertEqual([entry.get("version") for entry in entries], ["2", "9", "10"],
                         f"index entries of add, sorted by version: {entries}")
        for entry in entries:
            self.assertEqual(entry["state"], "READY", f"entry {entry}")
            self.assertEqual(entry["reason"], "", f"entry {entry}")
        self.assertEqual(self.check_add(server, "add"), 10, "highest version is 10, not 9")
        self.assertEqual(self.check_add(server, "add", version=9), 9)

        logged = [json.dumps(record) for record in server.records]
        self.assertTrue(any("draft" in line for line in logged),
                        "no log line names the ignored folder 'draft'")
        self.assertFalse(any(".staging-12" in line for line in logged),
                         "a dot folder was logged; dot folders are ignored silently")

    def test_invalid_model_names_ignored(self):
        valid = ["ok.model-1_A", "n" * 128]
        invalid = ["bad name", "a+b", "stats", ".hidden", "x" * 129]
        for name in valid + invalid:
            self.write_version(name, 1, add_model_bytes(1))
        server = self.start_server(["--model-repository", self.repo])

        names = sorted({entry["name"] for entry in self.index(server)})
        self.assertEqual(names, sorted(valid), "models in the index")
        for name in valid:
            self.assertEqual(self.versions_in_state(server, name, "READY"), [1], name)
            self.check_add(server, name, expected_version=1)
        logged = [json.dumps(record) for record in server.records]
        for name in ("bad name", "a+b", "x" * 129):
            self.assertTrue(any(name in line for line in logged),
                            f"no log line names the ignored model folder {name!r}")

    def test_name_in_two_repositories(self):
        first = os.path.join(self.root, "first")
        second = os.path.join(self.root, "second")
        self.add_versions("dup", [1], first)
        self.add_versions("dup", [2], second)
        self.add_versions("only_first", [1], first)
        self.add_versions("only_second", [3], second)
        server = self.start_server(["--model-repository", first, "--model-repository", second])

        self.assertEqual(self.versions_in_state(server, "only_first", "READY"), [1])
        self.assertEqual(self.versions_in_state(server, "only_second", "READY"), [3])
        self.check_add(server, "only_first", expected_version=1)
        self.check_add(server, "only_second", expected_version=3)

        entries = self.entries_of(server, "dup")
        self.assertEqual(len(entries), 1, f"index entries of dup: {entries}")
        self.assertNotIn("version", entries[0], f"dup entry {entries[0]}")
        self.assertEqual(entries[0]["state"], "UNAVAILABLE", f"dup entry {entries[0]}")
        self.assertIn("repositor", entries[0]["reason"].lower(), f"dup entry {entries[0]}")
        response = server.infer("dup", [("x", "FP32", add_input())])
        self.assertStatus(response, (404, 503), "infer on a name found in two repositories")

        errors = [json.dumps(record) for record in server.records
                  if record.get("level") == "error"]
        for path in (first, second):
            self.assertTrue(any(path in line and "dup" in line for line in errors),
                            f"no error log line names dup and {path}: {errors}")

    def test_symlink_leaving_repository_rejected(self):
        outside = os.path.join(self.root, "outside")
        outside_model = os.path.join(outside, "model.onnx")
        os.makedirs(os.path.join(outside, "model_folder", "1"))
        with open(outside_model, "wb") as f:
            f.write(add_model_bytes(5))
        shutil.copy(outside_model, os.path.join(outside, "model_folder", "1", "model.onnx"))
        with open(os.path.join(outside, "config.json"), "w") as f:
            json.dump({}, f)

        # model.onnx, a version folder, a model folder and config.json, each leaving the
        # repository through an absolute symlink.
        os.makedirs(os.path.join(self.repo, "file_out", "1"))
        os.symlink(outside_model, os.path.join(self.repo, "file_out", "1", "model.onnx"))
        os.makedirs(os.path.join(self.repo, "version_out"))
        os.symlink(os.path.join(outside, "model_folder", "1"),
                   os.path.join(self.repo, "version_out", "1"))
        os.symlink(os.path.join(outside, "model_folder"), os.path.join(self.repo, "folder_out"))
        self.add_versions("config_out", [1])
        os.symlink(os.path.join(outside, "config.json"),
                   os.path.join(self.repo, "config_out", "config.json"))
        # A relative symlink that climbs out with "..".
        os.makedirs(os.path.join(self.repo, "dots_out", "1"))
        os.symlink(os.path.join("..", "..", "..", "outside", "model.onnx"),
                   os.path.join(self.repo, "dots_out", "1", "model.onnx"))
        self.add_versions("plain", [1])
        server = self.start_server(["--model-repository", self.repo])

        for name in ("file_out", "version_out", "dots_out"):
            entry = self.entry(server, name, 1)
            self.assertIsNotNone(entry, f"{name} version 1 missing from {self.index(server)}")
            self.assertEqual(entry["state"], "UNAVAILABLE", f"entry {entry}")
            self.assertTrue(leaves_repository(entry["reason"]),
                            f"reason of {entry} does not say the link leaves the repository")
        for name in ("folder_out", "config_out"):
            entries = self.entries_of(server, name)
            self.assertTrue(entries, f"{name} missing from {self.index(server)}")
            for entry in entries:
                self.assertNotEqual(entry["state"], "READY", f"entry {entry}")
            self.assertTrue(any(leaves_repository(entry["reason"]) for entry in entries),
                            f"no reason of {entries} says the link leaves the repository")
            self.assertStatus(server.infer(name, [("x", "FP32", add_input())]), (404, 503),
                              f"infer on {name}")
        self.check_add(server, "plain", expected_version=1)

    def test_symlink_inside_repository_accepted(self):
        self.add_versions("inside", [1])
        # Version 2's model.onnx and the version folder 3 point at version 1 by relative links,
        # config.json at a dot file in the model folder, and model "alias" at the model folder.
        os.makedirs(os.path.join(self.repo, "inside", "2"))
        os.symlink(os.path.join("..", "1", "model.onnx"),
                   os.path.join(self.repo, "inside", "2", "model.onnx"))
        os.symlink("1", os.path.join(self.repo, "inside", "3"))
        with open(os.path.join(self.repo, "inside", ".policy.json"), "w") as f:
            json.dump({"version_policy": {"all": {}}}, f)
        os.symlink(".policy.json", os.path.join(self.repo, "inside", "config.json"))
        os.symlink("inside", os.path.join(self.repo, "alias"))
        server = self.start_server(["--model-repository", self.repo])

        for name in ("inside", "alias"):
            self.assertEqual(self.versions_in_state(server, name, "READY"), [1, 2, 3],
                             f"{name}: index {self.index(server)}")
            # Every version runs the file of version 1, so the output is x + 1.
            x = add_input(1, 3)
            response = server.infer(name, [("x", "FP32", x)], version=2)
            self.assertStatus(response, 200, f"{name} version 2")
            self.assertEqual(response.json()["model_version"], "2")
            np.testing.assert_array_equal(harness.output_array(response.json()["outputs"][0]),
                                          x + np.float32(1))


class VersionPolicyTest(RepositoryTestCase):
    def start_with_policy(self, policy, versions=(1, 2, 3)):
        self.add_versions("add", versions)
        if policy is not None:
            self.write_config("add", {"version_policy": policy})
        return self.start_server(["--model-repository", self.repo])

    def check_served(self, server, expected):
        self.assertEqual(self.versions_in_state(server, "add", "READY"), expected,
                         f"index {self.index(server)}")
        metadata = server.get("/v2/models/add")
        self.assertStatus(metadata, 200, "GET /v2/models/add")
        versions = metadata.json()["versions"]
        for version in versions:
            self.assertIsInstance(version, str, f"versions {versions}")
        self.assertEqual(sorted(int(version) for version in versions), expected,
                         "metadata versions")
        self.assertEqual(self.check_add(server, "add"), max(expected),
                         "a request without a version runs the highest READY version")
        for version in expected:
            self.check_add(server, "add", version=version, expected_version=version)

    def test_default_latest_one(self):
        server = self.start_with_policy(None)
        self.check_served(server, [3])
        config = server.get("/v2/models/add/config").json()
        self.assertEqual(config["version_policy"], {"latest": {"num_versions": 1}})
        response = server.infer("add", [("x", "FP32", add_input())], version=1)
        self.assertStatus(response, (404, 503), "infer on a version the policy leaves out")

    def test_latest_two(self):
        server = self.start_with_policy({"latest": {"num_versions": 2}})
        self.check_served(server, [2, 3])

    def test_latest_more_than_present(self):
        server = self.start_with_policy({"latest": {"num_versions": 5}})
        self.check_served(server, [1, 2, 3])

    def test_all(self):
        server = self.start_with_policy({"all": {}})
        self.check_served(server, [1, 2, 3])

    def test_specific(self):
        server = self.start_with_policy({"specific": {"versions": [1, 3]}})
        self.check_served(server, [1, 3])
        response = server.infer("add", [("x", "FP32", add_input())], version=2)
        self.assertStatus(response, (404, 503), "infer on a version the policy leaves out")

    def test_highest_ready_when_highest_failed(self):
        self.add_versions("add", [1, 3])
        self.write_version("add", 2, BROKEN_MODEL)
        self.write_config("add", {"version_policy": {"specific": {"versions": [1, 2]}}})
        server = self.start_server(["--model-repository", self.repo])

        self.check_served(server, [1])
        failed = self.entry(server, "add", 2)
        self.assertIsNotNone(failed, f"version 2 missing from {self.index(server)}")
        self.assertEqual(failed["state"], "UNAVAILABLE", f"entry {failed}")
        self.assertNotEqual(failed["reason"], "", f"entry {failed}")

    def test_metadata_answers_for_highest_ready(self):
        self.add_versions("add", [1])
        self.write_version("add", 2, add_model_bytes(2, input_name="x_v2"))
        self.write_config("add", {"version_policy": {"all": {}}})
        server = self.start_server(["--model-repository", self.repo])

        self.assertEqual(server.get("/v2/models/add").json()["inputs"][0]["name"], "x_v2")
        self.assertEqual(server.get("/v2/models/add/versions/1").json()["inputs"][0]["name"],
                         "x")
        self.assertEqual(self.check_add(server, "add", input_name="x_v2"), 2)

    def test_invalid_policy_names_key(self):
        policies = {
            "zero": {"latest": {"num_versions": 0}},
            "negative": {"latest": {"num_versions": -1}},
            "unknown_kind": {"newest": {}},
            "two_kinds": {"all": {}, "latest": {"num_versions": 1}},
            "versions_not_list": {"specific": {"versions": 3}},
            "zero_version": {"specific": {"versions": [0]}},
        }
        for name, policy in policies.items():
            self.add_versions(name, [1])
            self.write_config(name, {"version_policy": policy})
        self.add_versions("good", [1])
        server = self.start_server(["--model-repository", self.repo])

        for name, policy in policies.items():
            with self.subTest(policy=policy):
                entries = self.entries_of(server, name)
                self.assertEqual(len(entries), 1, f"entries of {name}: {entries}")
                self.assertNotIn("version", entries[0], f"entry {entries[0]}")
                self.assertEqual(entries[0]["state"], "UNAVAILABLE", f"entry {entries[0]}")
                self.assertIn("version_policy", entries[0]["reason"], f"entry {entries[0]}")
        self.check_add(server, "good", expected_version=1)

    def test_version_ready_endpoint(self):
        self.add_versions("add", [1, 3])
        self.write_version("add", 2, BROKEN_MODEL)
        self.write_config("add", {"version_policy": {"all": {}}})
        server = self.start_server(["--model-repository", self.repo])

        for version in (1, 3):
            response = server.get(f"/v2/models/add/versions/{version}/ready")
            self.assertStatus(response, 200, f"ready of version {version}")
            self.assertEqual(response.json(), {"name": "add", "ready": True})
        response = server.get("/v2/models/add/versions/2/ready")
        self.assertStatus(response, 503, "ready of the version that failed to load")
        self.assertEqual(response.json().get("ready"), False, f"body {response.body!r}")
        response = server.get("/v2/models/add/versions/7/ready")
        self.assertStatus(response, 404, "ready of a version not in the repository")
        response = server.get("/v2/models/nosuch/versions/1/ready")
        self.assertStatus(response, 404, "ready of a model not in the repository")
        response = server.get("/v2/models/add/ready")
        self.assertStatus(response, 200, "ready of the model")


class RepositoryApiTest(RepositoryTestCase):
    def make_repo(self):
        self.add_versions("add", [1])
        self.add_versions("bee", [1, 2])
        self.write_config("bee", {"version_policy": {"all": {}}})
        self.write_version("broken", 1, BROKEN_MODEL)

    def test_index_sorted_with_states(self):
        self.make_repo()
        server = self.start_server(["--model-repository", self.repo])

        for body in (b"", b"{}", b'{"ready": false}'):
            entries = self.index(server, body)
            keys = [(entry["name"], int(entry.get("version", 0))) for entry in entries]
            self.assertEqual(keys, [("add", 1), ("bee", 1), ("bee", 2), ("broken", 1)],
                             f"index with body {body!r}: {entries}")
            for entry in entries:
                self.assertIsInstance(entry["version"], str, f"entry {entry}")
                self.assertIn(entry["state"], ("LOADING", "READY", "UNLOADING", "UNAVAILABLE"))
            states = {(entry["name"], entry["version"]): entry for entry in entries}
            self.assertEqual(states[("add", "1")], {"name": "add", "version": "1",
                                                    "state": "READY", "reason": ""})
            self.assertEqual(states[("broken", "1")]["state"], "UNAVAILABLE")
            self.assertNotEqual(states[("broken", "1")]["reason"], "")

        ready = self.index(server, b'{"ready": true}')
        self.assertEqual([(entry["name"], entry["version"]) for entry in ready],
                         [("add", "1"), ("bee", "1"), ("bee", "2")], f"ready index {ready}")

    def test_index_invalid_body(self):
        self.make_repo()
        server = self.start_server(["--model-repository", self.repo])
        for body in (b"not json", b'{"ready": "yes"}', b"[]"):
            response = server.request("POST", "/v2/repository/index", body,
                                      {"Content-Type": "application/json"})
            self.assertStatus(response, 400, f"index with body {body!r}")

    def test_load_unload_forbidden_unless_explicit(self):
        self.make_repo()
        for mode in ("none", "poll"):
            with self.subTest(mode=mode):
                server = self.start_server(["--model-repository", self.repo,
                                            "--model-control-mode", mode])
                for action in ("load", "unload"):
                    response = self.control(server, "add", action)
                    self.assertErrorMentions(response, 403, ["--model-control-mode"],
                                             f"{action} in mode {mode}")
                self.assertEqual(self.versions_in_state(server, "add", "READY"), [1])
                self.assertEqual(len(self.index(server)), 4, "the index works in every mode")
                server.stop()

    def test_invalid_names_rejected(self):
        self.add_versions("add", [1])
        self.add_versions("n" * 128, [1])
        # A model folder beside the repository, which a path-like name must never reach.
        self.add_versions("escape", [1], self.root)
        server = self.start_server(["--model-repository", self.repo,
                                    "--model-control-mode", "explicit"])

        names = ["..", ".", "%2e%2e", "%2E%2E", "a%2Fb", "..%2Fescape", "%2e%2e%2fescape",
                 "bad%20name", "n" * 129, "stats", ".hidden", "a%00b", "a+b"]
        for name in names:
            for action in ("load", "unload"):
                with self.subTest(name=name, action=action):
                    response = self.control(server, name, action)
                    self.assertErrorMentions(response, 400, [], f"{action} {name!r}")
        self.assertEqual([entry["name"] for entry in self.index(server)], ["add", "n" * 128],
                         "the index lists only models of the repository")
        self.assertEqual(self.versions_in_state(server, "add", "READY"), [])
        # A name of the maximum length, 128 characters, loads.
        self.load(server, "n" * 128)
        self.check_add(server, "n" * 128, expected_version=1)

    def test_unknown_name_not_found(self):
        self.add_versions("add", [1])
        server = self.start_server(["--model-repository", self.repo,
                                    "--model-control-mode", "explicit"])
        for action in ("load", "unload"):
            response = self.control(server, "nosuch", action)
            self.assertErrorMentions(response, 404, ["nosuch"], f"{action} of an unknown name")

    def test_body_parameters(self):
        self.add_versions("add", [1])
        server = self.start_server(["--model-repository", self.repo,
                                    "--model-control-mode", "explicit"])
        for body in (b"", b"{}", b'{"parameters": {}}'):
            with self.subTest(body=body):
                self.load(server, "add", body)
                self.unload(server, "add", body)
        bad_bodies = [
            b'{"parameters": {"config": "{}"}}',
            b'{"parameters": {"file:1/model.onnx": "AAAA"}}',
            b'{"parameters": []}',
            b"not json",
            b"[]",
        ]
        for body in bad_bodies:
            for action in ("load", "unload"):
                with self.subTest(body=body, action=action):
                    response = self.control(server, "add", action, body)
                    self.assertErrorMentions(response, 400, [], f"{action} with {body!r}")

        # Unload also takes Triton's boolean unload_dependents, which load rejects.
        for value in (b"true", b"false"):
            self.unload(server, "add", b'{"parameters": {"unload_dependents": %s}}' % value)
        response = self.control(server, "add", "unload",
                                b'{"parameters": {"unload_dependents": "yes"}}')
        self.assertErrorMentions(response, 400, ["unload_dependents"],
                                 "unload with unload_dependents \"yes\"")
        response = self.control(server, "add", "load",
                                b'{"parameters": {"unload_dependents": true}}')
        self.assertErrorMentions(response, 400, [], "load with unload_dependents")
        self.assertEqual(self.versions_in_state(server, "add", "READY"), [],
                         "a rejected load loaded the model")

    def test_healthz_lists_versions(self):
        self.make_repo()
        server = self.start_server(["--model-repository", self.repo])
        models = server.get("/healthz").json()["models"]
        listed = {(model["name"], str(model["version"])): model for model in models}
        for key in (("add", "1"), ("bee", "1"), ("bee", "2"), ("broken", "1")):
            self.assertIn(key, listed, f"/healthz models {models}")
        self.assertEqual(listed[("bee", "2")]["state"], "READY")
        self.assertEqual(listed[("broken", "1")]["state"], "UNAVAILABLE")
        self.assertNotEqual(listed[("broken", "1")]["reason"], "")


class StrictReadinessTest(RepositoryTestCase):
    def make_repo(self):
        self.add_versions("add", [1])
        self.write_version("broken", 1, BROKEN_MODEL)

    def test_failed_model_and_strict_flag(self):
        self.make_repo()
        cases = [([], 503), (["--strict-readiness", "true"], 503),
                 (["--strict-readiness", "false"], 200), (["--strict-readiness=false"], 200)]
        for flags, expected in cases:
            with self.subTest(flags=flags):
                server = self.start_server(["--model-repository", self.repo] + flags)
                self.wait_loading_done(server)
                self.assertEqual(self.ready_status(server), expected,
                                 f"/v2/health/ready with {flags}")
                self.assertEqual(server.get("/v2/health/live").status, 200)
                self.check_add(server, "add", expected_version=1)
                server.stop()

    def test_all_ready_is_ready(self):
        self.add_versions("add", [1, 2])
        server = self.start_server(["--model-repository", self.repo])
        self.assertEqual(self.ready_status(server), 200)

    def test_explicit_mode_counts_failed_loads_only(self):
        self.make_repo()
        server = self.start_server(["--model-repository", self.repo,
                                    "--model-control-mode", "explicit"])
        self.assertEqual(self.ready_status(server), 200, "models never loaded do not count")

        response = self.control(server, "broken", "load")
        self.assertErrorMentions(response, 400, [], "load of a model that fails")
        self.assertEqual(self.ready_status(server), 503, "a failed load counts")

        self.unload(server, "broken")
        self.wait_loading_done(server)
        self.assertEqual(self.ready_status(server), 200, "an unloaded model does not count")

        self.load(server, "add")
        self.unload(server, "add")
        self.wait_loading_done(server)
        self.assertEqual(self.ready_status(server), 200, "an unloaded model does not count")

    def test_explicit_mode_not_strict(self):
        self.make_repo()
        server = self.start_server(["--model-repository", self.repo,
                                    "--model-control-mode", "explicit",
                                    "--strict-readiness", "false"])
        response = self.control(server, "broken", "load")
        self.assertStatus(response, 400, "load of a model that fails")
        self.assertEqual(self.ready_status(server), 200)


class CommandLineTest(RepositoryTestCase):
    def test_usage_errors_exit_2(self):
        self.add_versions("add", [1])
        model_file = os.path.join(harness.test_data_dir(), "scale.onnx")
        cases = [
            ["--model-repository", self.repo, "--load-model", "add"],
            ["--model-repository", self.repo, "--model-control-mode", "none",
             "--load-model", "add"],
            ["--model-repository", self.repo, "--model-control-mode", "poll",
             "--load-model", "add"],
            ["--model-repository", self.repo, "--model-control-mode", "sometimes"],
            ["--model-repository", self.repo, "--model-control-mode", "poll",
             "--repository-poll-secs", "0"],
            ["--model-repository", self.repo, "--model-control-mode", "poll",
             "--repository-poll-secs", "86401"],
            ["--model-repository", self.repo, "--strict-readiness", "maybe"],
            [model_file, "--model-control-mode", "explicit"],
            [model_file, "--model-control-mode", "poll"],
        ]
        for args in cases:
            with self.subTest(args=args):
                code, stderr = run_binary(args)
                self.assertEqual(harness.sanitizer_lines(stderr.splitlines()), [], stderr)
                self.assertEqual(code, 2, f"exit code of {args}; stderr:\n{stderr}")

    def test_poll_secs_bounds_accepted(self):
        self.add_versions("add", [1])
        for secs in ("1", "86400"):
            with self.subTest(secs=secs):
                server = self.start_server(["--model-repository", self.repo,
                                            "--model-control-mode", "poll",
                                            "--repository-poll-secs", secs])
                self.check_add(server, "add", expected_version=1)
                server.stop()

    def test_model_file_in_mode_none(self):
        server = self.start_server([os.path.join(harness.test_data_dir(), "scale.onnx"),
                                    "--model-control-mode", "none"])
        self.assertEqual(server.get("/v2/models/scale").json()["versions"], ["1"])
        entries = self.index(server)
        self.assertEqual(entries, [{"name": "scale", "version": "1", "state": "READY",
                                    "reason": ""}])


class ExplicitModeTest(RepositoryTestCase):
    def make_repo(self):
        self.add_versions("add", [1])
        self.add_versions("bee", [1])
        self.add_versions("cat", [1])

    def explicit_server(self, *flags):
        return self.start_server(["--model-repository", self.repo,
                                  "--model-control-mode", "explicit", *flags])

    def test_nothing_loaded_at_start(self):
        self.make_repo()
        server = self.explicit_server()
        entries = self.index(server)
        self.assertEqual([entry["name"] for entry in entries], ["add", "bee", "cat"])
        for entry in entries:
            self.assertNotIn("version", entry, f"entry {entry}")
            self.assertEqual(entry["state"], "UNAVAILABLE", f"entry {entry}")
            self.assertEqual(entry["reason"], "not loaded", f"entry {entry}")
        self.assertEqual(self.index(server, b'{"ready": true}'), [])
        response = server.infer("add", [("x", "FP32", add_input())])
        self.assertNotServing(response, "infer on a model never loaded")
        self.assertStatus(server.get("/v2/models/add/ready"), (404, 503))
        self.assertEqual(self.ready_status(server), 200)

    def test_load_model_flag(self):
        self.make_repo()
        server = self.explicit_server("--load-model", "add", "--load-model", "cat")
        self.assertEqual(self.versions_in_state(server, "add", "READY"), [1])
        self.assertEqual(self.versions_in_state(server, "cat", "READY"), [1])
        self.assertEqual(self.entry(server, "bee")["reason"], "not loaded")
        self.check_add(server, "add", expected_version=1)
        server.stop()

        server = self.explicit_server("--load-model", "*")
        for name in ("add", "bee", "cat"):
            self.assertEqual(self.versions_in_state(server, name, "READY"), [1], name)

    def test_load_model_added_after_start(self):
        self.make_repo()
        server = self.explicit_server()
        self.add_versions("dog", [2])
        self.load(server, "dog")
        self.assertEqual(self.versions_in_state(server, "dog", "READY"), [2])
        self.check_add(server, "dog", expected_version=2)

    def test_load_unload_cycle(self):
        self.make_repo()
        server = self.explicit_server()
        self.load(server, "add")
        self.assertEqual(self.versions_in_state(server, "add", "READY"), [1])
        self.check_add(server, "add", expected_version=1)
        self.assertIn(("add", "1", "READY"),
                      {(m["name"], str(m.get("version")), m["state"])
                       for m in server.get("/healthz").json()["models"]})

        self.unload(server, "add")
        self.wait_for(server, lambda: self.entry(server, "add", 1) is not None
                      and self.entry(server, "add", 1)["state"] == "UNAVAILABLE",
                      "add version 1 UNAVAILABLE")
        self.assertEqual(self.entry(server, "add", 1)["reason"], "unloaded")
        response = server.infer("add", [("x", "FP32", add_input())])
        self.assertNotServing(response, "infer after unload")
        # Unloading a model that is not loaded succeeds.
        self.unload(server, "add")
        self.unload(server, "bee")

        self.load(server, "add")
        self.check_add(server, "add", expected_version=1)

    def test_load_applies_changed_files_only(self):
        self.make_repo()
        server = self.explicit_server("--load-model", "add")
        loaded_lines = len(server.find_logs(msg="model loaded", model="add"))
        self.load(server, "add")
        self.assertEqual(len(server.find_logs(msg="model loaded", model="add")), loaded_lines,
                         "loading a loaded model without changed files loaded it again")

        self.publish_version("add", 2, add_model_bytes(2))
        self.load(server, "add")
        self.assertEqual(self.versions_in_state(server, "add", "READY"), [2],
                         "load of a loaded model applies a new version")
        self.check_add(server, "add", expected_version=2)

        self.write_config("add", {"max_batch_size": 4})
        self.load(server, "add")
        self.assertEqual(server.get("/v2/models/add/config").json()["max_batch_size"], 4,
                         "load of a loaded model applies a changed config.json")

    def test_failed_load_reports_reason(self):
        self.make_repo()
        self.write_version("broken", 1, BROKEN_MODEL)
        server = self.explicit_server()
        response = self.control(server, "broken", "load")
        text = self.assertErrorMentions(response, 400, [], "load of a broken model")
        self.assertNotEqual(text.strip(), "", "empty reason")
        entry = self.entry(server, "broken", 1)
        self.assertIsNotNone(entry, f"broken missing from {self.index(server)}")
        self.assertEqual(entry["state"], "UNAVAILABLE")
        self.assertNotEqual(entry["reason"], "")

    def test_unload_lets_accepted_requests_finish(self):
        """Check that requests accepted before an unload finish with the right output.

        Requests sent after the unload began get 503 or 404 with a message that the model is
        unloading or unloaded, and a later load serves again."""
        os.makedirs(os.path.join(self.repo, "slow", "1"))
        shutil.copy(os.path.join(harness.test_data_dir(), "slow.onnx"),
                    os.path.join(self.repo, "slow", "1", "model.onnx"))
        # One instance, so the first request runs while the others wait in the queue.
        self.write_config("slow", {"instance_group": [{"count": 1}]})
        server = self.explicit_server("--load-model", "slow")
        rounds = harness.calibrate_slow_rounds(server, 3.0)

        requests = []
        for index in range(3):
            elements = harness.SLOW_ELEMENTS + index
            pattern = np.array([0.5, -1.0, 0.0, 1.5][index:] + [0.5, -1.0, 0.0, 1.5][:index],
                               dtype=np.float32)
            x = np.resize(pattern, elements).astype(np.float32)
            body = json.dumps({"inputs": [
                harness.infer_input("x", "FP32", x),
                harness.infer_input("n", "INT64", np.array([rounds], dtype=np.int64))]})
            requests.append((x, body))
        results = [None] * len(requests)

        def send(index):
            results[index] = server.post_json("/v2/models/slow/infer", requests[index][1],
                                              timeout=300)

        threads = [threading.Thread(target=send, args=(i,), daemon=True)
                   for i in range(len(requests))]
        for thread in threads:
            thread.start()
        # The pause lets the server read and queue the three small bodies. Each request
        # computes for about 3 s, so all of them are still running or queued afterwards.
        time.sleep(1.0)

        self.unload(server, "slow")
        state = self.entry(server, "slow", 1)
        self.assertIsNotNone(state, f"slow version 1 missing from {self.index(server)}")
        self.assertIn(state["state"], ("UNLOADING", "UNAVAILABLE"), f"entry after unload {state}")
        late = server.post_json("/v2/models/slow/infer", harness.slow_body(1))
        self.assertNotServing(late, "request after the unload began")

        for thread in threads:
            thread.join(300)
        for index, (x, _) in enumerate(requests):
            response = results[index]
            self.assertIsNotNone(response, f"request {index} got no answer")
            self.assertStatus(response, 200, f"request {index} accepted before the unload")
            document = response.json()
            self.assertEqual(document["model_version"], "1")
            y = harness.output_array(document["outputs"][0])
            # Iterate on the request's distinct values only, then spread them like x.
            values = x[:4].copy()
            for _ in range(rounds):
                values = np.sin(values).astype(np.float32)
            expected = np.resize(values, x.shape).astype(np.float32)
            # ONNX Runtime's Sin and numpy's differ in the last bits, and every round adds such
            # an error, so after thousands of rounds they agree to about 1e-2 (an estimate).
            np.testing.assert_allclose(y, expected, rtol=5e-2, atol=1e-6,
                                       err_msg=f"output of request {index}")

        self.wait_for(server, lambda: self.entry(server, "slow", 1)["state"] == "UNAVAILABLE",
                      "slow version 1 UNAVAILABLE once its requests finished")
        self.assertEqual(self.entry(server, "slow", 1)["reason"], "unloaded")
        self.assertNotServing(server.post_json("/v2/models/slow/infer", harness.slow_body(1)),
                              "request after the unload finished")

        self.load(server, "slow")
        response = server.post_json("/v2/models/slow/infer", harness.slow_body(1))
        self.assertStatus(response, 200, "request after the model was loaded again")
        self.assertEqual(response.json()["model_version"], "1")


class ContinuousClient(threading.Thread):
    """A thread that sends add-model requests back to back over one keep-alive connection.

    version: None to send requests without a version, else the version every request names.
    Records every failure: an HTTP error, a wrong output, or (without a version) a
    model_version older than one this connection already saw."""

    def __init__(self, server, model, number, version=None):
        super().__init__(daemon=True, name=f"client-{number}")
        self.server = server
        self.model = model
        self.number = number
        self.version = version
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.count = 0
        self.versions_seen = {}
        self.failures = []

    def requests_done(self):
        with self.lock:
            return self.count

    def run(self):
        rng = np.random.default_rng(self.number)
        path = f"/v2/models/{self.model}"
        if self.version is not None:
            path += f"/versions/{self.version}"
        path += "/infer"
        connection = self.server.connection(timeout=120)
        newest = 0
        try:
            while not self.stop_event.is_set():
                rows = int(rng.integers(1, 3))
                x = (rng.random((rows, 2), dtype=np.float32) * 100 - 50).astype(np.float32)
                try:
                    response = harness.send_request(connection, "POST", path, add_body(x),
                                                    {"Content-Type": "application/json"})
                except (OSError, http.client.HTTPException) as error:
                    self.record_failure(f"request {self.count}: {error!r}")
                    connection.close()
                    connection = self.server.connection(timeout=120)
                    continue
                error = add_answer_error(response.status, response.body, x, self.version)
                if error:
                    self.record_failure(f"request {self.count}: {error}")
                    continue
                version = answer_version(response)
                if self.version is None and version < newest:
                    self.record_failure(f"request {self.count}: model_version {version} after "
                                        f"{newest} on the same connection")
                newest = max(newest, version)
                with self.lock:
                    self.count += 1
                    self.versions_seen[version] = self.versions_seen.get(version, 0) + 1
        finally:
            connection.close()

    def record_failure(self, text):
        with self.lock:
            self.failures.append(text)
            self.count += 1


class PollModeTest(RepositoryTestCase):
    def poll_server(self, secs="1"):
        return self.start_server(["--model-repository", self.repo,
                                  "--model-control-mode", "poll",
                                  "--repository-poll-secs", secs])

    def wait_progress(self, server, clients, requests=5):
        """Wait until every client has sent `requests` more requests than now."""
        targets = [client.requests_done() + requests for client in clients]
        self.wait_for(server, lambda: all(client.requests_done() >= target
                                          for client, target in zip(clients, targets)),
                      f"{requests} more requests from every client")

    def test_changes_under_load_fail_no_request(self):
        """Publish a version, change config.json and remove a version while 5 connections send
        requests back to back: no request fails, every output matches its model_version, and
        model_version never goes back on one connection."""
        self.add_versions("add", [1, 2])
        self.write_config("add", {"version_policy": {"all": {}}})
        server = self.poll_server()
        self.wait_ready_versions(server, "add", [1, 2])

        clients = [ContinuousClient(server, "add", number) for number in range(4)]
        clients.append(ContinuousClient(server, "add", 4, version=2))
        for client in clients:
            client.start()
        try:
            self.wait_progress(server, clients)

            # A new version, published by renaming a finished dot folder.
            self.publish_version("add", 3, add_model_bytes(3))
            self.wait_ready_versions(server, "add", [1, 2, 3])
            self.wait_for(server, lambda: all(3 in client.versions_seen
                                              for client in clients[:4]),
                          "every unversioned client answered by version 3")
            self.wait_progress(server, clients)

            # A changed config.json reloads every version.
            self.write_config("add", {"version_policy": {"all": {}}, "max_batch_size": 4})
            self.wait_for(server, lambda: server.get("/v2/models/add/config").json()
                          .get("max_batch_size") == 4, "max_batch_size 4 in effect")
            self.wait_ready_versions(server, "add", [1, 2, 3])
            self.wait_progress(server, clients)

            # An old version removed.
            self.remove_version("add", 1)
            self.wait_ready_versions(server, "add", [2, 3])
            self.wait_progress(server, clients)
        finally:
            for client in clients:
                client.stop_event.set()
            for client in clients:
                client.join(120)

        for client in clients:
            self.assertFalse(client.is_alive(), f"{client.name} did not stop")
            self.assertEqual(client.failures[:20], [],
                             f"{client.name}: {len(client.failures)} failed requests")
        for client in clients[:4]:
            self.assertIn(2, client.versions_seen, f"{client.name}: {client.versions_seen}")
            self.assertIn(3, client.versions_seen, f"{client.name}: {client.versions_seen}")
        self.assertEqual(set(clients[4].versions_seen), {2})
        print(f"note: {sum(client.requests_done() for client in clients)} requests on "
              f"{len(clients)} connections during the changes, none failed", file=sys.stderr)
        metadata = server.get("/v2/models/add").json()
        self.assertEqual(sorted(metadata["versions"], key=int), ["2", "3"])
        self.assertEqual(server.get("/v2/models/add/config").json()["max_batch_size"], 4)
        response = server.infer("add", [("x", "FP32", np.zeros((5, 2), np.float32))])
        self.assertStatus(response, 400, "request over the new max_batch_size 4")

    def test_half_written_version_not_loaded(self):
        """A version whose model.onnx takes about 3 s to write in pieces is loaded only once
        complete and is never reported as a failed load."""
        self.add_versions("add", [1])
        server = self.poll_server()
        self.wait_ready_versions(server, "add", [1])

        reports = []
        watching = threading.Event()

        def watch_index():
            while not watching.is_set():
                for entry in self.index(server):
                    if entry["name"] == "add" and entry.get("version") == "2" \
                            and entry["state"] == "UNAVAILABLE":
                        reports.append(entry)
                time.sleep(0.1)

        watcher = threading.Thread(target=watch_index, daemon=True)
        watcher.start()
        try:
            data = add_model_bytes(2, padding=256 * 1024)
            folder = os.path.join(self.repo, "add", "2")
            os.makedirs(folder)
            pieces = 6
            size = (len(data) + pieces - 1) // pieces
            with open(os.path.join(folder, "model.onnx"), "wb") as f:
                for start in range(0, len(data), size):
                    f.write(data[start:start + size])
                    f.flush()
                    os.fsync(f.fileno())
                    time.sleep(0.5)
            self.wait_ready_versions(server, "add", [2])
        finally:
            watching.set()
            watcher.join(60)

        self.assertEqual(reports, [], "the half-written version was reported UNAVAILABLE")
        failed = [record for record in server.records
                  if record.get("model") == "add" and record.get("level") == "error"]
        self.assertEqual(failed, [], "error log lines about the half-written version")
        self.check_add(server, "add", expected_version=2)

    def test_failed_new_version_keeps_old_serving(self):
        self.add_versions("add", [1])
        server = self.poll_server()
        self.wait_ready_versions(server, "add", [1])

        self.publish_version("add", 2, BROKEN_MODEL)
        self.wait_for(server, lambda: self.entry(server, "add", 2) is not None
                      and self.entry(server, "add", 2)["state"] == "UNAVAILABLE",
                      "the broken version 2 reported UNAVAILABLE")
        self.assertNotEqual(self.entry(server, "add", 2)["reason"], "")
        self.assertEqual(self.versions_in_state(server, "add", "READY"), [1])
        self.check_add(server, "add", expected_version=1)
        errors = [record for record in server.records
                  if record.get("model") == "add" and record.get("level") == "error"]
        self.assertTrue(errors, "no error log line for the failed load of version 2")

    def test_changed_model_file_reloaded(self):
        self.add_versions("add", [1])
        server = self.poll_server()
        self.wait_ready_versions(server, "add", [1])

        # Version 1's file replaced in one rename by a model that adds 7 instead of 1.
        staging = os.path.join(self.root, "model-7.onnx")
        with open(staging, "wb") as f:
            f.write(add_model_bytes(7))
        os.rename(staging, os.path.join(self.repo, "add", "1", "model.onnx"))
        x = add_input(2, 5)

        def runs_new_file():
            response = server.infer("add", [("x", "FP32", x)])
            self.assertStatus(response, 200, "infer while version 1 is replaced")
            self.assertEqual(response.json()["model_version"], "1")
            y = harness.output_array(response.json()["outputs"][0])
            return np.array_equal(y, x + np.float32(7))

        self.wait_for(server, runs_new_file, "version 1 computing x + 7 after its file changed")
        self.assertEqual(self.versions_in_state(server, "add", "READY"), [1])

    def test_policy_change_applied(self):
        self.add_versions("add", [1, 2])
        server = self.poll_server()
        self.wait_ready_versions(server, "add", [2])

        self.write_config("add", {"version_policy": {"all": {}}})
        self.wait_ready_versions(server, "add", [1, 2])
        self.check_add(server, "add", expected_version=2)

        self.write_config("add", {"version_policy": {"specific": {"versions": [1]}}})
        self.wait_ready_versions(server, "add", [1])
        self.check_add(server, "add", expected_version=1)

    def test_new_model_and_removed_model(self):
        self.add_versions("add", [1])
        self.add_versions("bee", [1])
        server = self.poll_server()
        self.wait_ready_versions(server, "bee", [1])

        staging = os.path.join(self.root, "cat")
        self.add_versions("cat", [4], self.root)
        os.rename(staging, os.path.join(self.repo, "cat"))
        self.wait_ready_versions(server, "cat", [4])
        self.check_add(server, "cat", expected_version=4)

        os.rename(os.path.join(self.repo, "bee"), os.path.join(self.root, "bee-removed"))
        self.wait_for(server, lambda: self.versions_in_state(server, "bee", "READY") == [],
                      "bee no longer READY")
        self.assertStatus(server.infer("bee", [("x", "FP32", add_input())]), (404, 503))
        self.check_add(server, "add", expected_version=1)


class SighupTest(RepositoryTestCase):
    def test_none_mode_rescans(self):
        self.add_versions("add", [1])
        server = self.start_server(["--model-repository", self.repo])
        self.publish_version("add", 2, add_model_bytes(2))
        os.kill(server.pid, signal.SIGHUP)
        self.wait_ready_versions(server, "add", [2])
        self.check_add(server, "add", expected_version=2)

    def test_poll_mode_rescans(self):
        self.add_versions("add", [1])
        # A poll interval far longer than the test, so only SIGHUP can start the scan.
        server = self.start_server(["--model-repository", self.repo,
                                    "--model-control-mode", "poll",
                                    "--repository-poll-secs", "86400"])
        self.publish_version("add", 2, add_model_bytes(2))
        os.kill(server.pid, signal.SIGHUP)
        self.wait_ready_versions(server, "add", [2])
        self.check_add(server, "add", expected_version=2)

    def test_explicit_mode_applies_loaded_models(self):
        self.add_versions("add", [1])
        self.add_versions("bee", [1])
        server = self.start_server(["--model-repository", self.repo,
                                    "--model-control-mode", "explicit", "--load-model", "add"])
        self.write_config("add", {"max_batch_size": 4})
        os.kill(server.pid, signal.SIGHUP)
        self.wait_for(server, lambda: server.get("/v2/models/add/config").json()
                      .get("max_batch_size") == 4, "max_batch_size 4 in effect after SIGHUP")
        self.check_add(server, "add", expected_version=1)

        self.publish_version("add", 2, add_model_bytes(2))
        os.kill(server.pid, signal.SIGHUP)
        self.wait_ready_versions(server, "add", [2])
        self.check_add(server, "add", expected_version=2)

        # Removing the highest version brings the one below back under the latest 1 policy.
        self.remove_version("add", 2)
        os.kill(server.pid, signal.SIGHUP)
        self.wait_ready_versions(server, "add", [1])
        self.check_add(server, "add", expected_version=1)

        self.assertEqual(self.versions_in_state(server, "bee", "READY"), [],
                         "SIGHUP loaded a model that was not loaded")
        self.assertEqual(self.entry(server, "bee")["reason"], "not loaded")


class MemoryTest(RepositoryTestCase):
    def test_load_unload_cycles_bounded_rss(self):
        self.write_version("add", 1, add_model_bytes(1, weight_elements=MEMORY_WEIGHT_ELEMENTS))
        # Without optimizations ONNX Runtime keeps the weight instead of folding its sum.
        self.write_config("add", {"graph_optimization_level": "disable"})
        server = self.start_server(["--model-repository", self.repo,
                                    "--model-control-mode", "explicit"])
        baseline = None
        for cycle in range(1, MEMORY_CYCLES + 1):
            self.load(server, "add")
            self.check_add(server, "add", expected_version=1, seed=cycle)
            self.unload(server, "add")
            self.wait_for(server, lambda: self.entry(server, "add", 1)["state"] == "UNAVAILABLE",
                          f"add UNAVAILABLE after unload {cycle}")
            if cycle == MEMORY_BASELINE_CYCLE:
                baseline = rss_kib(server.pid)
        final = rss_kib(server.pid)

        self.load(server, "add")
        self.check_add(server, "add", expected_version=1)
        self.assertEqual(self.ready_status(server), 200)

        print(f"note: VmRSS {baseline} KiB after cycle {MEMORY_BASELINE_CYCLE}, {final} KiB "
              f"after cycle {MEMORY_CYCLES}", file=sys.stderr)
        sanitizer = sanitizer_in(server)
        if sanitizer is not None:
            self.skipTest(f"the server runs under {sanitizer}, whose allocator keeps freed "
                          f"memory; VmRSS went from {baseline} KiB to {final} KiB")
        self.assertLessEqual(final - baseline, RSS_GROWTH_LIMIT_KIB,
                             f"VmRSS grew from {baseline} KiB after cycle "
                             f"{MEMORY_BASELINE_CYCLE} to {final} KiB after cycle "
                             f"{MEMORY_CYCLES}")


if __name__ == "__main__":
    unittest.main(verbosity=2)
