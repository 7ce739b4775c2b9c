#!/usr/bin/python3
"""Run the ONNX backend node tests (Debian's libonnx-testdata) through a running onnxserve.

Each case is a one-operator model with reference inputs and outputs as TensorProto files. The
cases are copied into model repositories in groups, one server per group, and the first data set
of each case is sent as a KServe v2 JSON infer request. Outputs are compared with the reference
at the suite's tolerances (rtol 1e-3, atol 1e-7). Random operators are compared by shape and
datatype only, because ONNX Runtime's C API cannot seed them.

Usage: conformance.py [--cases DIR] [--filter REGEX] [--group N] [--report FILE]
Needs ONNXSERVE_BIN (the built server). Prints one line per case that did not pass, then
"conformance: N passed, N failed, N skipped".
"""
import argparse
import glob
import json
import os
import re
import shutil
import sys
import tempfile

import numpy as np
import onnx
from onnx import numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
import harness  # noqa: E402

DEFAULT_CASES = "/usr/share/libonnx-testdata/data/node"

# ONNX element type -> KServe v2 datatype.
DATATYPES = {
    onnx.TensorProto.BOOL: "BOOL", onnx.TensorProto.UINT8: "UINT8",
    onnx.TensorProto.UINT16: "UINT16", onnx.TensorProto.UINT32: "UINT32",
    onnx.TensorProto.UINT64: "UINT64", onnx.TensorProto.INT8: "INT8",
    onnx.TensorProto.INT16: "INT16", onnx.TensorProto.INT32: "INT32",
    onnx.TensorProto.INT64: "INT64", onnx.TensorProto.FLOAT16: "FP16",
    onnx.TensorProto.FLOAT: "FP32", onnx.TensorProto.DOUBLE: "FP64",
    onnx.TensorProto.BFLOAT16: "BF16", onnx.TensorProto.STRING: "BYTES",
}

# Operators whose outputs cannot be reproduced: compared by shape and datatype only.
RANDOM_CASE = re.compile(r"bernoulli|random|training_dropout", re.I)


def graph_inputs(model):
    initializers = {tensor.name for tensor in model.graph.initializer}
    return [value for value in model.graph.input if value.name not in initializers]


def non_tensor_reason(model):
    for value in list(graph_inputs(model)) + list(model.graph.output):
        if value.type.WhichOneof("value") != "tensor_type":
            return f"non-tensor value {value.name!r} ({value.type.WhichOneof('value')})"
    return None


def read_tensors(folder, prefix):
    arrays = []
    for path in sorted(glob.glob(os.path.join(folder, f"{prefix}_*.pb")),
                       key=lambda p: int(re.search(r"_(\d+)\.pb$", p).group(1))):
        tensor = onnx.TensorProto()
        with open(path, "rb") as f:
            tensor.ParseFromString(f.read())
        arrays.append((tensor.data_type, numpy_helper.to_array(tensor)))
    return arrays


def as_values(array, elem_type):
    """BF16 tensors may come back from numpy_helper as their raw uint16 bits: widen them."""
    array = np.asarray(array)
    if elem_type == onnx.TensorProto.BFLOAT16 and array.dtype == np.uint16:
        return (array.astype(np.uint32) << 16).view(np.float32)
    return array


def float_value(value):
    """JSON has no NaN or infinity literal, so the server takes these strings instead."""
    if np.isnan(value):
        return "NaN"
    if np.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return float(value)


def json_values(array, datatype):
    flat = np.asarray(array).reshape(-1)
    if datatype == "BOOL":
        return [bool(v) for v in flat]
    if datatype in ("FP16", "FP32", "FP64", "BF16"):
        return [float_value(v) for v in flat]
    if datatype == "BYTES":
        return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in flat]
    return [int(v) for v in flat]


def compare(name, expected_type, expected, output, random_case):
    datatype = DATATYPES.get(expected_type)
    if output["datatype"] != datatype:
        return f"output {name}: datatype {output['datatype']}, expected {datatype}"
    if list(output["shape"]) != list(expected.shape):
        return f"output {name}: shape {output['shape']}, expected {list(expected.shape)}"
    if random_case:
        return None
    if datatype == "BYTES":
        got = list(harness.flatten(output["data"]))
        want = json_values(expected, "BYTES")
        return None if got == want else f"output {name}: strings differ"
    special = {"NaN": np.nan, "Infinity": np.inf, "-Infinity": -np.inf}
    got = np.array([special.get(v, v) if isinstance(v, str) else v
                    for v in harness.flatten(output["data"])], dtype=np.float64)
    want = np.asarray(expected, dtype=np.float64).reshape(-1)
    if not np.allclose(got, want, rtol=1e-3, atol=1e-7, equal_nan=True):
        worst = int(np.argmax(np.abs(got - want)))
        return f"output {name}: value {got[worst]} at {worst}, expected {want[worst]}"
    return None


def run_case(server, name, folder, model):
    inputs = read_tensors(os.path.join(folder, "test_data_set_0"), "input")
    outputs = read_tensors(os.path.join(folder, "test_data_set_0"), "output")
    body_inputs = []
    for value, (_, array) in zip(graph_inputs(model), inputs):
        # The model's declared type decides the datatype: some files store BF16 as UINT16.
        elem_type = value.type.tensor_type.elem_type
        datatype = DATATYPES.get(elem_type)
        if datatype is None:
            return "failed", f"input {value.name}: ONNX type {elem_type} has no KServe datatype"
        array = as_values(array, elem_type)
        body_inputs.append({"name": value.name, "shape": list(array.shape),
                            "datatype": datatype, "data": json_values(array, datatype)})
    body = json.dumps({"inputs": body_inputs}, allow_nan=False).encode()
    response = server.post_json(f"/v2/models/{name}/infer", body, timeout=120)
    if response.status != 200:
        return "failed", f"HTTP {response.status}: {response.body[:300]!r}"
    by_name = {output["name"]: output for output in response.json()["outputs"]}
    random_case = bool(RANDOM_CASE.search(name))
    for value, (_, expected) in zip(model.graph.output, outputs):
        if value.name not in by_name:
            return "failed", f"output {value.name} missing from the response"
        elem_type = value.type.tensor_type.elem_type
        problem = compare(value.name, elem_type, as_values(expected, elem_type),
                          by_name[value.name], random_case)
        if problem:
            return "failed", problem
    return "passed", "compared by shape and datatype only" if random_case else ""


def run_group(cases, results):
    with tempfile.TemporaryDirectory(prefix="oxs-conformance-") as repo:
        for name, folder, _model in cases:
            os.makedirs(os.path.join(repo, name, "1"))
            shutil.copy(os.path.join(folder, "model.onnx"), os.path.join(repo, name, "1"))
        server = harness.Server(["--model-repository", repo,
                                 "--max-request-bytes", "256MiB"], start_timeout=600)
        try:
            health = server.get("/healthz").json()
            states = {model["name"]: model for model in health["models"]}
            for name, folder, model in cases:
                state = states.get(name, {})
                if state.get("state") != "READY":
                    results.append((name, "skipped",
                                    "ONNX Runtime cannot load it: " + state.get("reason", "?")))
                    continue
                try:
                    results.append((name,) + run_case(server, name, folder, model))
                except Exception as error:  # one broken case must not end the run
                    results.append((name, "failed", f"{type(error).__name__}: {error}"))
        finally:
            server.kill()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=DEFAULT_CASES)
    parser.add_argument("--filter", default="")
    parser.add_argument("--group", type=int, default=100)
    parser.add_argument("--report")
    args = parser.parse_args()
    harness.raise_open_file_limit()

    pattern = re.compile(args.filter)
    results, pending = [], []
    for folder in sorted(glob.glob(os.path.join(args.cases, "*"))):
        name = os.path.basename(folder)
        if not pattern.search(name) or not os.path.isfile(os.path.join(folder, "model.onnx")):
            continue
        model = onnx.load(os.path.join(folder, "model.onnx"))
        reason = non_tensor_reason(model)
        if reason:
            results.append((name, "skipped", reason))
            continue
        pending.append((name, folder, model))
    for start in range(0, len(pending), args.group):
        run_group(pending[start:start + args.group], results)

    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for name, outcome, reason in sorted(results):
        counts[outcome] += 1
        if outcome != "passed":
            print(f"{outcome}: {name}: {reason}")
    if args.report:
        with open(args.report, "w") as f:
            for name, outcome, reason in sorted(results):
                f.write(f"{outcome}\t{name}\t{reason}\n")
    print(f"conformance: {counts['passed']} passed, {counts['failed']} failed, "
          f"{counts['skipped']} skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
