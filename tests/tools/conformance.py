#!/usr/bin/python3
"""Run the ONNX backend node tests (Debian's libonnx-testdata) through onnxserve and ONNX Runtime.

Each case is a one-operator model with reference inputs and outputs as TensorProto files. Every
data set of every case is sent to onnxserve twice, as a KServe v2 JSON infer request and with the
binary tensor extension, and is also run in-process by ort_reference (ONNX Runtime's C API, one
batch process for all cases). The models are copied into model repositories in groups, one
server per group.

A case passes when both the JSON and the binary response match the reference outputs at the
suite's tolerances (rtol 1e-3, atol 1e-7) and equal in-process ONNX Runtime bit for bit. Other
outcomes, listed with their reason in tests/conformance/expected.tsv:
  matches-ort  in-process ONNX Runtime differs from the reference, and both responses equal it
               bit for bit
  shape-only   a random operator, compared by datatype and shape only, because ONNX Runtime's
               C API cannot seed it
  skipped      a non-tensor input or output, or a model that ONNX Runtime cannot load or run

The run fails when a case fails, or when a case is skipped or matches only ONNX Runtime while
the list expects a better outcome. A case that does better than the list is only reported. Run
with --write-expected to regenerate the list.

Needs ONNXSERVE_BIN (the built server) and ORT_REFERENCE (the built ort_reference). Prints each
problem, then "conformance: N passed, N failed, N skipped" and one line of counts per mode.
"""
import argparse
import collections
import glob
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
import harness  # noqa: E402

DEFAULT_CASES = "/usr/share/libonnx-testdata/data/node"
DEFAULT_EXPECTED = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                                 "conformance", "expected.tsv"))
MODES = ("json", "binary")
RTOL = 1e-3
ATOL = 1e-7

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

# KServe v2 datatype -> little-endian numpy element type of its binary layout. BF16 values are
# kept as their 16-bit patterns, because numpy has no bfloat16. BYTES elements are Python bytes.
RAW_DTYPES = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype("u1"), "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"), "UINT64": np.dtype("<u8"), "INT8": np.dtype("i1"),
    "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
    "BF16": np.dtype("<u2"), "BYTES": np.dtype(object),
}
FLOAT_DATATYPES = ("FP16", "BF16", "FP32", "FP64")

# Operators whose outputs come from a random number generator.
RANDOM_OPS = {"Bernoulli", "Multinomial", "RandomNormal", "RandomNormalLike", "RandomUniform",
              "RandomUniformLike"}

# JSON has no NaN or infinity literal, so the server reads and writes these strings instead.
FLOAT_STRINGS = {"NaN": np.nan, "Infinity": np.inf, "-Infinity": -np.inf}


def parse_json(text):
    """json.loads, except that the number -0 becomes the float -0.0: the server may write a
    negative zero that way, and Python would read it as the integer 0 and lose the sign."""
    return json.loads(text, parse_int=lambda digits: -0.0 if digits == "-0" else int(digits))


class WireError(Exception):
    """A tensor or a message that does not follow the KServe v2 wire format."""


# Tensors --------------------------------------------------------------------------------------

class Tensor:
    """A KServe v2 tensor: datatype, shape and a flat numpy array of RAW_DTYPES[datatype]."""

    def __init__(self, datatype, shape, values):
        self.datatype = datatype
        self.shape = [int(d) for d in shape]
        self.values = values

    def __repr__(self):
        return f"Tensor({self.datatype}, {self.shape}, {self.values[:8]!r})"


def bf16_to_float32(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def float32_to_bf16(values):
    """Round float32 values to BF16 bit patterns (round to nearest even, NaN kept quiet)."""
    bits = np.asarray(values, dtype=np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))) >> 16
    nan = np.isnan(np.asarray(values, dtype=np.float32))
    rounded[nan] = (bits[nan] >> 16) | np.uint32(0x40)
    return rounded.astype(np.uint16)


def tensor_from_proto(proto, elem_type):
    """Convert a TensorProto to a Tensor of the model's declared element type. Some files of the
    suite store BF16 data as UINT16, so the model's type wins over the file's."""
    datatype = DATATYPES.get(elem_type or proto.data_type)
    if datatype is None:
        raise WireError(f"ONNX element type {elem_type or proto.data_type} has no KServe datatype")
    shape = list(proto.dims)
    if datatype == "BYTES":
        values = np.empty(len(proto.string_data), dtype=object)
        values[:] = list(proto.string_data)
        return Tensor(datatype, shape, values)
    array = numpy_helper.to_array(proto)
    if datatype == "BF16" and array.dtype != np.uint16:
        values = float32_to_bf16(array.reshape(-1))
    else:
        values = np.ascontiguousarray(array.reshape(-1)).astype(RAW_DTYPES[datatype])
    return Tensor(datatype, shape, values)


def element_count(shape):
    count = 1
    for dim in shape:
        count *= int(dim)
    return count


def encode_raw(tensor):
    """Encode a tensor in the binary layout: little-endian row-major elements, BOOL as one byte,
    BYTES as a 4-byte little-endian length and the bytes of each element."""
    if tensor.datatype != "BYTES":
        return tensor.values.astype(RAW_DTYPES[tensor.datatype]).tobytes()
    parts = []
    for element in tensor.values:
        parts.append(len(element).to_bytes(4, "little"))
        parts.append(bytes(element))
    return b"".join(parts)


def decode_raw(datatype, shape, data, label):
    """Decode the binary layout of one tensor, checking its size against the shape."""
    if datatype not in RAW_DTYPES:
        raise WireError(f"{label}: unknown datatype {datatype!r}")
    count = element_count(shape)
    if datatype != "BYTES":
        itemsize = RAW_DTYPES[datatype].itemsize
        if len(data) != count * itemsize:
            raise WireError(f"{label}: {len(data)} bytes, shape {shape} of {datatype} needs "
                            f"{count * itemsize}")
        values = np.frombuffer(data, dtype=np.uint8 if datatype == "BOOL" else RAW_DTYPES[datatype])
        if datatype == "BOOL":
            if np.any(values > 1):
                raise WireError(f"{label}: BOOL byte {int(values.max())}, expected 0 or 1")
            values = values.astype(np.bool_)
        return Tensor(datatype, shape, values.copy())
    elements = []
    offset = 0
    for index in range(count):
        if len(data) - offset < 4:
            raise WireError(f"{label}: data ends inside the length of element {index}")
        length = int.from_bytes(data[offset:offset + 4], "little")
        offset += 4
        if len(data) - offset < length:
            raise WireError(f"{label}: element {index} has length {length}, only "
                            f"{len(data) - offset} bytes follow")
        elements.append(bytes(data[offset:offset + length]))
        offset += length
    if offset != len(data):
        raise WireError(f"{label}: {len(data) - offset} bytes after the {count} elements")
    values = np.empty(count, dtype=object)
    values[:] = elements
    return Tensor(datatype, shape, values)


def json_number(value):
    if np.isnan(value):
        return "NaN"
    if np.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    # float() of a float16 or float32 is exact, and repr of that double is a decimal that
    # rounds back to the same value in the narrower type.
    return float(value)


def json_data(tensor, label):
    """Convert a tensor to the flat "data" array of a JSON request."""
    values = tensor.values
    if tensor.datatype == "BOOL":
        return [bool(v) for v in values]
    if tensor.datatype == "BF16":
        return [json_number(v) for v in bf16_to_float32(values)]
    if tensor.datatype in FLOAT_DATATYPES:
        return [json_number(v) for v in values]
    if tensor.datatype == "BYTES":
        strings = []
        for index, element in enumerate(values):
            try:
                strings.append(element.decode("utf-8"))
            except UnicodeDecodeError:
                raise WireError(f"{label}: element {index} is not UTF-8, which JSON cannot carry")
        return strings
    return [int(v) for v in values]


def tensor_from_json(output, label):
    """Convert one output of a JSON response, whose "data" may be nested, to a Tensor."""
    datatype = output.get("datatype")
    shape = output.get("shape")
    if datatype not in RAW_DTYPES or not isinstance(shape, list):
        raise WireError(f"{label}: invalid datatype {datatype!r} or shape {shape!r}")
    data = list(harness.flatten(output.get("data", [])))
    if len(data) != element_count(shape):
        raise WireError(f"{label}: {len(data)} elements, shape {shape} has {element_count(shape)}")
    if datatype == "BYTES":
        values = np.empty(len(data), dtype=object)
        values[:] = [str(v).encode("utf-8") for v in data]
    elif datatype in FLOAT_DATATYPES:
        wide = np.array([FLOAT_STRINGS[v] if isinstance(v, str) else v for v in data],
                        dtype=np.float64)
        if datatype == "BF16":
            values = float32_to_bf16(wide.astype(np.float32))
        else:
            values = wide.astype(RAW_DTYPES[datatype])
    else:
        # Through Python ints, so 64-bit values stay exact.
        values = np.array([int(v) for v in data], dtype=RAW_DTYPES[datatype])
    return Tensor(datatype, shape, values)


# Requests and responses -----------------------------------------------------------------------

def json_request(inputs):
    """Build a JSON infer request body from [(name, Tensor)]."""
    document = {"inputs": [{"name": name, "shape": tensor.shape, "datatype": tensor.datatype,
                            "data": json_data(tensor, f"input {name}")}
                           for name, tensor in inputs]}
    return {"Content-Type": "application/json"}, json.dumps(document, allow_nan=False).encode()


def binary_request(inputs):
    """Build a binary-extension infer request from [(name, Tensor)] that requests every output
    in binary."""
    entries, blobs = [], []
    for name, tensor in inputs:
        blob = encode_raw(tensor)
        entries.append({"name": name, "shape": tensor.shape, "datatype": tensor.datatype,
                        "parameters": {"binary_data_size": len(blob)}})
        blobs.append(blob)
    header = json.dumps({"inputs": entries, "parameters": {"binary_data_output": True}}).encode()
    headers = {"Content-Type": "application/octet-stream",
               "Inference-Header-Content-Length": str(len(header))}
    return headers, header + b"".join(blobs)


def parse_binary_request(headers, body):
    """Split a binary-extension request back into [(name, Tensor)]. The self-test uses it to
    check binary_request."""
    length = int(headers["Inference-Header-Content-Length"])
    document = json.loads(body[:length])
    offset = length
    inputs = []
    for entry in document["inputs"]:
        size = entry["parameters"]["binary_data_size"]
        data = body[offset:offset + size]
        offset += size
        inputs.append((entry["name"], decode_raw(entry["datatype"], entry["shape"], data,
                                                 f"input {entry['name']}")))
    if offset != len(body):
        raise WireError(f"{len(body) - offset} bytes after the last input")
    return inputs


def parse_json_response(status, headers, body):
    """Return {output name: Tensor} from a JSON infer response."""
    document = parse_json(body)
    return {output["name"]: tensor_from_json(output, f"output {output['name']}")
            for output in document["outputs"]}


def parse_binary_response(status, headers, body):
    """Return {output name: Tensor} from an infer response that carries every output in binary."""
    length_text = headers.get("Inference-Header-Content-Length")
    if length_text is None:
        raise WireError("the response has no Inference-Header-Content-Length header")
    content_type = headers.get("Content-Type", "")
    if content_type != "application/octet-stream":
        raise WireError(f"Content-Type {content_type!r}, expected 'application/octet-stream'")
    length = int(length_text)
    if length > len(body):
        raise WireError(f"Inference-Header-Content-Length {length}, body has {len(body)} bytes")
    document = parse_json(body[:length])
    offset = length
    outputs = {}
    for output in document["outputs"]:
        name = output["name"]
        if "data" in output:
            raise WireError(f"output {name}: has \"data\" although binary output was requested")
        size = output.get("parameters", {}).get("binary_data_size")
        if not isinstance(size, int) or size < 0 or size > len(body) - offset:
            raise WireError(f"output {name}: binary_data_size {size!r}, "
                            f"{len(body) - offset} bytes left")
        outputs[name] = decode_raw(output["datatype"], output["shape"],
                                   body[offset:offset + size], f"output {name}")
        offset += size
    if offset != len(body):
        raise WireError(f"{len(body) - offset} bytes after the last output")
    return outputs


REQUEST_BUILDERS = {"json": json_request, "binary": binary_request}
RESPONSE_PARSERS = {"json": parse_json_response, "binary": parse_binary_response}


def self_test():
    """Check the encoders and decoders above on each datatype, so that a failing case points at
    the server rather than at this script."""
    samples = {
        "BOOL": [True, False, True], "UINT8": [0, 255, 7], "UINT16": [0, 65535, 300],
        "UINT32": [0, 2**32 - 1, 70000], "UINT64": [0, 2**64 - 1, 2**53 + 1],
        "INT8": [-128, 127, 0], "INT16": [-32768, 32767, -1],
        "INT32": [-2**31, 2**31 - 1, 5], "INT64": [-2**63, 2**63 - 1, 2**53 + 1],
        "FP16": [0.1, -65504.0, 6e-8, np.inf, np.nan, -0.0],
        "FP32": [0.1, 3.4028235e38, 1e-45, -np.inf, np.nan, -0.0],
        "FP64": [0.1, 1.7976931348623157e308, 5e-324, np.inf, np.nan, -0.0],
    }
    tensors = [(datatype, Tensor(datatype, [len(values)],
                                 np.array(values, dtype=RAW_DTYPES[datatype])))
               for datatype, values in samples.items()]
    tensors.append(("BF16", Tensor("BF16", [2, 2], np.array([0x3F80, 0x7F7F, 0x0001, 0xFFC0],
                                                            dtype=np.uint16))))
    strings = np.empty(4, dtype=object)
    strings[:] = [b"", b"a\x00b", "\u00e9t\u00e9".encode("utf-8"), b"x" * 300]
    tensors.append(("BYTES", Tensor("BYTES", [4], strings)))
    tensors.append(("FP32 scalar", Tensor("FP32", [], np.array([1.5], dtype="<f4"))))
    tensors.append(("INT64 empty", Tensor("INT64", [0, 3], np.array([], dtype="<i8"))))

    inputs = [(f"in{i}", tensor) for i, (_, tensor) in enumerate(tensors)]
    headers, body = binary_request(inputs)
    decoded = dict(parse_binary_request(headers, body))
    _, json_body = json_request(inputs)
    from_json = {entry["name"]: tensor_from_json(entry, entry["name"])
                 for entry in json.loads(json_body)["inputs"]}
    for name, tensor in inputs:
        for how, result in (("binary", decoded[name]), ("JSON", from_json[name])):
            problem = compare_exact(name, tensor, result)
            if problem:
                raise AssertionError(f"self-test: {how} round trip of {tensor.datatype}: {problem}")

    negative_zero = parse_json_response(200, {}, b'{"outputs": [{"name": "z", "datatype": "FP32", '
                                        b'"shape": [2], "data": [-0, 0]}]}')["z"]
    if list(negative_zero.values.view(np.uint32)) != [0x80000000, 0]:
        raise AssertionError(f"self-test: JSON -0 and 0 read as {negative_zero.values!r}")

    # A binary response: JSON header, then the outputs' bytes in the order of "outputs".
    blobs = [encode_raw(tensor) for _, tensor in inputs]
    header = json.dumps({"outputs": [
        {"name": name, "datatype": tensor.datatype, "shape": tensor.shape,
         "parameters": {"binary_data_size": len(blob)}}
        for (name, tensor), blob in zip(inputs, blobs)]}).encode()
    response_headers = {"Inference-Header-Content-Length": str(len(header)),
                        "Content-Type": "application/octet-stream"}
    outputs = parse_binary_response(200, response_headers, header + b"".join(blobs))
    for name, tensor in inputs:
        problem = compare_exact(name, tensor, outputs[name])
        if problem:
            raise AssertionError(f"self-test: binary response of {tensor.datatype}: {problem}")
    for damaged in (header + b"".join(blobs)[:-1], header + b"".join(blobs) + b"\0"):
        try:
            parse_binary_response(200, response_headers, damaged)
        except WireError:
            continue
        raise AssertionError("self-test: a binary response of the wrong size was accepted")


# Comparison -----------------------------------------------------------------------------------

def float_values(tensor):
    if tensor.datatype == "BF16":
        return bf16_to_float32(tensor.values).astype(np.float64)
    return tensor.values.astype(np.float64)


def compare_header(name, expected, actual):
    if actual.datatype != expected.datatype:
        return f"output {name}: datatype {actual.datatype}, expected {expected.datatype}"
    if list(actual.shape) != list(expected.shape):
        return f"output {name}: shape {actual.shape}, expected {expected.shape}"
    return None


def first_difference(name, bad, actual, expected):
    index = int(np.flatnonzero(bad)[0])
    return (f"output {name}: {int(np.count_nonzero(bad))} of {bad.size} elements differ, first "
            f"at flat index {index}: {actual[index]!r}, expected {expected[index]!r}")


def compare_close(name, expected, actual):
    """Compare floats at the suite's tolerances, |actual - expected| <= atol + rtol * |expected|
    with NaN equal to NaN, and integers, BOOL and BYTES exactly."""
    problem = compare_header(name, expected, actual)
    if problem:
        return problem
    if expected.datatype in FLOAT_DATATYPES:
        want, got = float_values(expected), float_values(actual)
        with np.errstate(invalid="ignore"):
            close = np.isclose(got, want, rtol=RTOL, atol=ATOL, equal_nan=True)
        bad = ~close
    else:
        want, got = expected.values, actual.values
        bad = np.asarray(got != want, dtype=bool)
    if np.any(bad):
        return first_difference(name, bad, got, want)
    return None


def compare_exact(name, expected, actual):
    """Compare bit for bit, except that any NaN equals any NaN, because JSON carries no payload."""
    problem = compare_header(name, expected, actual)
    if problem:
        return problem
    want, got = expected.values, actual.values
    if expected.datatype in FLOAT_DATATYPES:
        both_nan = np.isnan(float_values(expected)) & np.isnan(float_values(actual))
        bits = np.dtype(f"<u{want.dtype.itemsize}")
        bad = (want.view(bits) != got.view(bits)) & ~both_nan
    else:
        bad = np.asarray(got != want, dtype=bool)
    if np.any(bad):
        return first_difference(name, bad, got, want)
    return None


def compare_outputs(compare, expected, actual, names):
    """Apply compare to every named output and return the first problem, or None."""
    for name in names:
        if name not in actual:
            return f"output {name} is missing"
        problem = compare(name, expected[name], actual[name])
        if problem:
            return problem
    return None


# Cases ----------------------------------------------------------------------------------------

class DataSet:
    def __init__(self, index, inputs, outputs):
        self.index = index
        self.inputs = inputs  # [(name, Tensor)] in the model's input order
        self.outputs = outputs  # {name: Tensor}


class Case:
    def __init__(self, name, folder):
        self.name = name
        self.folder = folder
        self.model_path = os.path.join(folder, "model.onnx")
        self.model = onnx.load(self.model_path)
        self.output_names = [value.name for value in self.model.graph.output]
        self.data_sets = []

    def graph_inputs(self):
        initializers = {tensor.name for tensor in self.model.graph.initializer}
        return [value for value in self.model.graph.input if value.name not in initializers]

    def non_tensor_reason(self):
        for value in self.graph_inputs() + list(self.model.graph.output):
            kind = value.type.WhichOneof("value")
            if kind != "tensor_type":
                return f"{value.name!r} is a {kind.replace('_type', '')}, not a tensor"
        return None

    def load_data(self):
        for folder in sorted(glob.glob(os.path.join(self.folder, "test_data_set_*")),
                             key=lambda path: int(path.rsplit("_", 1)[1])):
            index = int(folder.rsplit("_", 1)[1])
            inputs = [(value.name, tensor_from_proto(proto, value.type.tensor_type.elem_type))
                      for value, proto in zip(self.graph_inputs(), read_protos(folder, "input"))]
            outputs = {value.name: tensor_from_proto(proto, value.type.tensor_type.elem_type)
                       for value, proto in zip(self.model.graph.output,
                                               read_protos(folder, "output"))}
            self.data_sets.append(DataSet(index, inputs, outputs))

    def random_reason(self, data_set):
        """Say why the outputs of this case are random, or return None. Dropout is random in
        training mode unless its ratio is 0."""
        values = dict(data_set.inputs)
        for node in self.model.graph.node:
            if node.op_type in RANDOM_OPS:
                return f"random operator {node.op_type}"
            if node.op_type != "Dropout" or len(node.input) < 3 or not node.input[2]:
                continue
            training = values.get(node.input[2])
            ratio = values.get(node.input[1]) if len(node.input) > 1 and node.input[1] else None
            if training is None or not bool(training.values.all()):
                continue
            if ratio is not None and not np.any(float_values(ratio)):
                continue
            return "Dropout in training mode"
        return None


def read_protos(folder, prefix):
    protos = []
    for path in sorted(glob.glob(os.path.join(folder, f"{prefix}_*.pb")),
                       key=lambda p: int(re.search(r"_(\d+)\.pb$", p).group(1))):
        proto = onnx.TensorProto()
        with open(path, "rb") as f:
            proto.ParseFromString(f.read())
        protos.append(proto)
    return protos


# In-process ONNX Runtime ----------------------------------------------------------------------

def write_reference_jobs(cases, workdir):
    """Write each data set's inputs and one ort_reference --batch line per data set. Returns the
    job file and {(case name, data set index): output folder}."""
    folders = {}
    lines = []
    for case in cases:
        for data_set in case.data_sets:
            folder = os.path.join(workdir, case.name, str(data_set.index))
            os.makedirs(folder)
            fields = [case.model_path, folder]
            for number, (name, tensor) in enumerate(data_set.inputs):
                path = os.path.join(folder, f"input{number}.bin")
                with open(path, "wb") as f:
                    f.write(encode_raw(tensor))
                dims = "x".join(str(d) for d in tensor.shape)
                fields.append(f"{name}:{tensor.datatype}:{dims}:{path}")
            lines.append("\t".join(fields))
            folders[(case.name, data_set.index)] = folder
    job_path = os.path.join(workdir, "jobs.tsv")
    with open(job_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return job_path, folders


def start_reference(job_path, workdir):
    log = open(os.path.join(workdir, "ort_reference.log"), "wb")
    process = subprocess.Popen([harness.env_path("ORT_REFERENCE"), "--batch", job_path],
                               stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                               env=fast_unwind_environment())
    return process, log


def finish_reference(process, log, job_path, workdir):
    """Wait for the batch. When ort_reference crashes on a model, record the crash in that run's
    error.txt and continue the batch with the next line."""
    while True:
        code = process.wait()
        log.close()
        if code == 0:
            return
        with open(os.path.join(workdir, "ort_reference.log"), "rb") as f:
            output = f.read().decode("utf-8", "replace")
        if code > 0:
            raise RuntimeError(f"ort_reference --batch {job_path} failed with exit code {code}:\n"
                               + output[-4000:])
        with open(job_path) as f:
            lines = f.read().splitlines()
        started = [i for i, line in enumerate(lines)
                   if os.path.exists(os.path.join(line.split("\t")[1], "error.txt"))
                   or os.path.exists(os.path.join(line.split("\t")[1], "outputs.json"))]
        crashed = started[-1] if started else 0
        with open(os.path.join(lines[crashed].split("\t")[1], "error.txt"), "w") as f:
            f.write(f"ort_reference: Run failed: the process crashed with signal {-code}\n")
        job_path = os.path.join(workdir, f"jobs-after-{crashed}.tsv")
        with open(job_path, "w") as f:
            f.write("\n".join(lines[crashed + 1:]) + "\n")
        process, log = start_reference(job_path, workdir)


def reference_version(workdir):
    """Return the "ONNX Runtime VERSION" line that ort_reference --batch prints first."""
    with open(os.path.join(workdir, "ort_reference.log"), "rb") as f:
        first = f.readline().decode("utf-8", "replace").strip()
    return first if first.startswith("ONNX Runtime ") else "ONNX Runtime (version not reported)"


def testdata_version():
    result = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "libonnx-testdata"],
                            capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else "(version unknown)"


def read_reference(case, folder):
    """Return ("ok", {name: Tensor}) or ("skipped", reason) for one ort_reference run."""
    error_path = os.path.join(folder, "error.txt")
    if os.path.exists(error_path):
        with open(error_path, encoding="utf-8", errors="replace") as f:
            message = " ".join(f.read().split())
        message = message.replace(case.model_path, "model.onnx")
        for call, reason in (("CreateSession failed: ", "ONNX Runtime cannot load the model: "),
                             ("Run failed: ", "ONNX Runtime cannot run the model: ")):
            if call in message:
                return "skipped", reason + message.split(call, 1)[1]
        raise RuntimeError(f"ort_reference failed on {case.name}: {message}")
    with open(os.path.join(folder, "outputs.json")) as f:
        index = json.load(f)
    outputs = {}
    for entry in index["outputs"]:
        with open(os.path.join(folder, entry["file"]), "rb") as f:
            data = f.read()
        outputs[entry["name"]] = decode_raw(entry["datatype"], entry["shape"], data,
                                            f"ort_reference output {entry['name']}")
    return "ok", outputs


# The server -----------------------------------------------------------------------------------

def describe_exchange(mode, path, headers, body, response):
    """Show a request and its response compactly: the JSON part in full up to 600 bytes, the
    binary part by size."""
    if mode == "binary":
        length = int(headers["Inference-Header-Content-Length"])
        request = f"{body[:min(length, 600)]!r} + {len(body) - length} binary bytes"
    else:
        request = repr(body[:600]) + ("..." if len(body) > 600 else "")
    header_text = ", ".join(f"{k}: {v}" for k, v in headers.items())
    if response is None:
        return f"POST {path} [{header_text}] {request}"
    reply = repr(response.body[:600]) + ("..." if len(response.body) > 600 else "")
    return f"POST {path} [{header_text}] {request} -> HTTP {response.status} {reply}"


def infer(server, connection, case, data_set, mode):
    """Send one data set in one mode. Returns ("ok", {name: Tensor}) or ("failed", message)."""
    path = f"/v2/models/{case.name}/infer"
    try:
        headers, body = REQUEST_BUILDERS[mode](data_set.inputs)
    except WireError as error:
        return "failed", f"cannot build the request: {error}"
    try:
        response = harness.send_request(connection, "POST", path, body, headers)
    except (OSError, http.client.HTTPException) as error:
        connection.close()
        state = "running" if server.running() else f"exited with {server.proc.returncode}"
        return "failed", (f"{type(error).__name__}: {error} (server {state}); "
                          + describe_exchange(mode, path, headers, body, None))
    if response.status != 200:
        return "failed", describe_exchange(mode, path, headers, body, response)
    try:
        return "ok", RESPONSE_PARSERS[mode](response.status, response.headers, response.body)
    except (WireError, ValueError, KeyError, TypeError) as error:
        return "failed", (f"invalid response: {error}; "
                          + describe_exchange(mode, path, headers, body, response))


def fast_unwind_environment():
    """Return CTest's environment with LeakSanitizer's fast unwinder. CTest sets full
    unwinding so that the ONNX Runtime leak suppression matches, but here it made the
    AddressSanitizer run 4 times slower (60 s against 14 s on 2 cores). The servers are killed,
    so LeakSanitizer never runs in them. ort_reference still checks for leaks at its exit, and
    reported none with the fast unwinder."""
    env = dict(os.environ)
    if "fast_unwind_on_malloc=0" in env.get("LSAN_OPTIONS", ""):
        env["LSAN_OPTIONS"] = env["LSAN_OPTIONS"].replace("fast_unwind_on_malloc=0",
                                                          "fast_unwind_on_malloc=1")
    return env


def run_group(cases, modes, results):
    """Serve one group of cases from a fresh server and store every response in results, keyed
    by (case name, data set index, mode)."""
    with tempfile.TemporaryDirectory(prefix="oxs-conformance-") as repo:
        for case in cases:
            # A copy, not a link: the server rejects links that leave the repository.
            os.makedirs(os.path.join(repo, case.name, "1"))
            shutil.copy(case.model_path, os.path.join(repo, case.name, "1", "model.onnx"))
        server = harness.Server(["--model-repository", repo, "--max-request-bytes", "256MiB"],
                                start_timeout=600, env=fast_unwind_environment())
        try:
            states = {model["name"]: model for model in server.get("/healthz").json()["models"]}
            connection = server.connection(timeout=120)
            for case in cases:
                state = states.get(case.name, {})
                for data_set in case.data_sets:
                    for mode in modes:
                        key = (case.name, data_set.index, mode)
                        if state.get("state") != "READY":
                            results[key] = ("failed", "the server did not load the model: "
                                            + state.get("reason", json.dumps(state)))
                        else:
                            results[key] = infer(server, connection, case, data_set, mode)
            connection.close()
            reports = server.sanitizer_reports()
            if reports:
                raise RuntimeError("sanitizer reports in the server's stderr:\n"
                                   + server.stderr_text()[-20000:])
        finally:
            server.kill()


# Outcomes -------------------------------------------------------------------------------------

class Outcome:
    def __init__(self, case, outcome, reason, modes=None):
        self.case = case
        self.outcome = outcome  # passed, matches-ort, shape-only, skipped or failed
        self.reason = reason
        self.modes = modes or {}  # mode -> problem, or None when the mode passed


def judge_case(case, references, responses, modes):
    """Decide the outcome of one case from the in-process ONNX Runtime runs and the responses."""
    if not case.data_sets:
        return Outcome(case.name, "failed", "the case has no test_data_set_* folder")
    reference_runs = [references[(case.name, data_set.index)] for data_set in case.data_sets]
    for status, detail in reference_runs:
        if status == "skipped":
            return Outcome(case.name, "skipped", detail)

    random_reason = None
    ort_difference = None
    for data_set, (_, ort_outputs) in zip(case.data_sets, reference_runs):
        random_reason = random_reason or case.random_reason(data_set)
        compare = compare_header if random_reason else compare_close
        difference = compare_outputs(compare, data_set.outputs, ort_outputs, case.output_names)
        if difference and not ort_difference:
            ort_difference = f"data set {data_set.index}: {difference}"

    mode_problems = {}
    for mode in modes:
        problem = None
        for data_set, (_, ort_outputs) in zip(case.data_sets, reference_runs):
            status, served = responses[(case.name, data_set.index, mode)]
            if status != "ok":
                problem = served
            elif random_reason:
                problem = compare_outputs(compare_header, data_set.outputs, served,
                                          case.output_names)
            else:
                problem = compare_outputs(compare_exact, ort_outputs, served, case.output_names)
                if problem:
                    problem = "differs from in-process ONNX Runtime: " + problem
                elif not ort_difference:
                    problem = compare_outputs(compare_close, data_set.outputs, served,
                                              case.output_names)
            if problem:
                problem = f"data set {data_set.index}: {problem}"
                break
        mode_problems[mode] = problem

    failed = [f"{mode}: {problem}" for mode, problem in mode_problems.items() if problem]
    if failed:
        return Outcome(case.name, "failed", "; ".join(failed), mode_problems)
    if random_reason:
        return Outcome(case.name, "shape-only",
                       f"{random_reason}, which ONNX Runtime's C API cannot seed", mode_problems)
    if ort_difference:
        return Outcome(case.name, "matches-ort",
                       f"in-process ONNX Runtime differs from the reference: {ort_difference}",
                       mode_problems)
    return Outcome(case.name, "passed", "", mode_problems)


# An outcome ranks at least as well as every outcome after it in this order. A case may do
# better than the committed list without failing the run, never worse.
OUTCOME_ORDER = {"passed": 0, "shape-only": 0, "matches-ort": 1, "skipped": 2, "failed": 3}


def read_expected(path):
    expected = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 3 or fields[1] not in OUTCOME_ORDER or fields[1] == "failed":
                raise ValueError(f"{path}:{number}: expected CASE<TAB>OUTCOME<TAB>REASON with "
                                 f"OUTCOME one of matches-ort, shape-only, skipped")
            expected[fields[0]] = (fields[1], fields[2])
    return expected


def write_expected(path, outcomes, cases_folder, versions):
    listed = [o for o in outcomes if o.outcome in ("matches-ort", "shape-only", "skipped")]
    with open(path, "w", encoding="utf-8") as f:
        f.write("# Expected outcomes of the ONNX backend node tests that do not simply pass, read\n"
                "# by tests/tools/conformance.py. Every case not listed must pass. Written by\n"
                f"#   conformance.py --cases {cases_folder} --write-expected\n"
                f"# in a run with {versions}.\n"
                "# CASE<TAB>OUTCOME<TAB>REASON\n")
        for outcome in sorted(listed, key=lambda o: o.case):
            reason = outcome.reason.replace("\t", " ").replace("\n", " ")
            f.write(f"{outcome.case}\t{outcome.outcome}\t{reason}\n")
    return len(listed)


def check_against_expected(outcomes, expected, filtered):
    """Return (problems, notes): cases that did worse than the list, and cases that did better
    or are missing."""
    problems, notes = [], []
    seen = set()
    for outcome in outcomes:
        seen.add(outcome.case)
        if outcome.outcome == "failed":
            continue  # reported with the failures
        listed, _ = expected.get(outcome.case, ("passed", ""))
        if OUTCOME_ORDER[outcome.outcome] > OUTCOME_ORDER[listed]:
            problems.append(f"{outcome.case}: {outcome.outcome}, the list expects {listed}: "
                            f"{outcome.reason}")
        elif outcome.outcome != listed:
            notes.append(f"{outcome.case}: {outcome.outcome}, the list expects {listed}")
    if not filtered:
        for name in sorted(set(expected) - seen):
            notes.append(f"{name}: listed but not found among the cases")
    return problems, notes


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=DEFAULT_CASES,
                        help="folder of case folders (default: %(default)s)")
    parser.add_argument("--filter", default="", help="run only the cases whose name matches "
                        "this regular expression")
    parser.add_argument("--every", type=int, default=1, metavar="N",
                        help="run only every Nth case, in name order (default: 1, all)")
    parser.add_argument("--group", type=int, default=150, metavar="N",
                        help="cases per server (default: %(default)s)")
    parser.add_argument("--modes", default=",".join(MODES),
                        help="request formats, comma-separated (default: %(default)s)")
    parser.add_argument("--expected", default=DEFAULT_EXPECTED,
                        help="the committed list of outcomes (default: tests/conformance/"
                        "expected.tsv)")
    parser.add_argument("--write-expected", action="store_true",
                        help="rewrite --expected from this run instead of checking against it")
    parser.add_argument("--report", metavar="FILE",
                        help="write every case's outcome and reason to FILE, tab-separated")
    parser.add_argument("--verbose", action="store_true",
                        help="also print the skipped, matches-ort and shape-only cases")
    args = parser.parse_args()
    modes = [mode for mode in args.modes.split(",") if mode]
    if not modes or any(mode not in MODES for mode in modes):
        parser.error(f"--modes: {args.modes!r}, expected a comma-separated subset of json,binary")
    if args.write_expected and (args.filter or args.every != 1 or len(modes) != len(MODES)):
        parser.error("--write-expected needs a full run: no --filter, --every or --modes")
    if not os.path.isdir(args.cases):
        print(f"conformance: {args.cases} not found; install Debian's libonnx-testdata "
              "(scripts/install-deps.sh does)", file=sys.stderr)
        return 1
    self_test()

    pattern = re.compile(args.filter)
    outcomes, cases = [], []
    folders = sorted(folder for folder in glob.glob(os.path.join(args.cases, "*"))
                     if pattern.search(os.path.basename(folder))
                     and os.path.isfile(os.path.join(folder, "model.onnx")))
    for folder in folders[::args.every]:
        case = Case(os.path.basename(folder), folder)
        reason = case.non_tensor_reason()
        if reason:
            outcomes.append(Outcome(case.name, "skipped", reason))
            continue
        case.load_data()
        cases.append(case)

    responses = {}
    with tempfile.TemporaryDirectory(prefix="oxs-conformance-ort-") as workdir:
        job_path, reference_folders = write_reference_jobs(cases, workdir)
        started = time.monotonic()
        process, log = start_reference(job_path, workdir)
        try:
            for start in range(0, len(cases), args.group):
                run_group(cases[start:start + args.group], modes, responses)
        except BaseException:
            process.kill()
            raise
        served = time.monotonic()
        finish_reference(process, log, job_path, workdir)
        waited = time.monotonic() - served
        versions = f"{reference_version(workdir)} and libonnx-testdata {testdata_version()}"
        references = {key: read_reference(case, reference_folders[key])
                      for case in cases for key in [(case.name, d.index) for d in case.data_sets]}
    for case in cases:
        outcomes.append(judge_case(case, references, responses, modes))
    outcomes.sort(key=lambda o: o.case)

    counts = collections.Counter(o.outcome for o in outcomes)
    for outcome in outcomes:
        if outcome.outcome == "failed" or (args.verbose and outcome.outcome != "passed"):
            print(f"{outcome.outcome}: {outcome.case}: {outcome.reason}")
    if args.report:
        with open(args.report, "w", encoding="utf-8") as f:
            for outcome in outcomes:
                f.write(f"{outcome.case}\t{outcome.outcome}\t{outcome.reason}\n")

    exit_code = 1 if counts["failed"] else 0
    if args.write_expected:
        listed = write_expected(args.expected, outcomes, args.cases, versions)
        print(f"conformance: wrote {listed} cases to {args.expected}")
    else:
        expected = read_expected(args.expected)
        problems, notes = check_against_expected(outcomes, expected,
                                                 bool(args.filter) or args.every != 1)
        for problem in problems:
            print(f"worse than {os.path.basename(args.expected)}: {problem}")
        for note in notes:
            print(f"note: {note}; to update the list, run conformance.py --write-expected")
        if problems:
            exit_code = 1
            print(f"conformance: {len(problems)} cases did worse than {args.expected}. If the "
                  "change is intended (another ONNX Runtime or test data), regenerate it with "
                  "tests/tools/conformance.py --write-expected (ONNXSERVE_BIN and ORT_REFERENCE "
                  "set) and commit it.")

    print(f"conformance: {versions}; the servers took {served - started:.1f} s, then "
          f"ort_reference --batch {waited:.1f} s more")
    passed = counts["passed"] + counts["matches-ort"] + counts["shape-only"]
    print(f"conformance: {passed} passed, {counts['failed']} failed, {counts['skipped']} skipped "
          f"({counts['matches-ort']} of the passed match in-process ONNX Runtime, not the "
          f"reference; {counts['shape-only']} compared by datatype and shape only)")
    judged = [o for o in outcomes if o.outcome != "skipped"]
    for mode in modes:
        mode_failed = sum(1 for o in judged if o.modes.get(mode))
        print(f"conformance {mode}: {len(judged) - mode_failed} passed, {mode_failed} failed")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
