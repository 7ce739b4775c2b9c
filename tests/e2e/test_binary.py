#!/usr/bin/python3
"""BYTES tensors and the KServe v2 binary tensor data extension, end to end.

Every datatype goes through the identity model four ways (JSON or binary in, JSON or binary
out) and comes back bit for bit. BYTES elements travel as JSON strings or length-prefixed bytes,
empty and NUL-holding elements included. Each size the extension declares is checked: the
header length, each input's binary_data_size against its shape and against the bytes left, the
sum of them against the body, and the length prefixes of BYTES elements."""
import json
import os
import struct
import sys
import tempfile
import unittest
from fractions import Fraction

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

SHAPE = (2, 3)

# Identity input suffix, datatype, numpy dtype of the wire layout, six values.
TYPES = [
    ("bool", "BOOL", np.uint8, [1, 0, 1, 1, 0, 0]),
    ("uint8", "UINT8", np.uint8, [0, 255, 1, 127, 128, 254]),
    ("uint16", "UINT16", np.uint16, [0, 65535, 1, 32767, 32768, 65534]),
    ("uint32", "UINT32", np.uint32, [0, 2**32 - 1, 1, 2**31 - 1, 2**31, 2**32 - 2]),
    ("uint64", "UINT64", np.uint64, [0, 2**64 - 1, 1, 2**53 + 1, 2**63, 2**64 - 2]),
    ("int8", "INT8", np.int8, [-128, 127, 0, -1, 1, -127]),
    ("int16", "INT16", np.int16, [-32768, 32767, 0, -1, 1, -32767]),
    ("int32", "INT32", np.int32, [-2**31, 2**31 - 1, 0, -1, 1, -2**31 + 1]),
    ("int64", "INT64", np.int64, [-2**63, 2**63 - 1, 9007199254740993, 0, -1, 2**53]),
    # FP16 and BF16 as their bit patterns: largest finite, smallest subnormal, -0, NaN, -inf.
    ("fp16", "FP16", np.uint16, [0x7BFF, 0x0001, 0x8000, 0x7E00, 0xFC00, 0x2E66]),
    ("bf16", "BF16", np.uint16, [0x7F7F, 0x0001, 0x8000, 0x7FC0, 0xFF80, 0x3DCD]),
    ("fp32", "FP32", np.float32, [3.4028235e38, 1e-45, -0.0, float("nan"), float("-inf"), 0.1]),
    ("fp64", "FP64", np.float64, [1.7976931348623157e308, 5e-324, -0.0, float("nan"),
                                  float("inf"), 0.1]),
]


def wire(dtype, values):
    return np.array(values, dtype=dtype).astype(np.dtype(dtype).newbyteorder("<")).tobytes()


def bytes_wire(elements):
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


def binary_request(document, chunks):
    """Body and headers of an infer request whose JSON header is followed by chunks."""
    header = json.dumps(document).encode()
    return header + b"".join(chunks), {"Inference-Header-Content-Length": str(len(header)),
                                       "Content-Type": "application/octet-stream"}


def load_json(text):
    """json.loads, keeping the sign of -0, which Python would read as the integer 0."""
    return json.loads(text, parse_int=lambda s: -0.0 if s == "-0" else int(s))


def split_reply(response):
    """Returns (JSON document, {output name: bytes}) of a reply with binary outputs."""
    length = response.header("Inference-Header-Content-Length")
    if length is None:
        return load_json(response.body), {}
    length = int(length)
    document = load_json(response.body[:length])
    outputs, at = {}, length
    for output in document["outputs"]:
        size = output.get("parameters", {}).get("binary_data_size")
        if size is not None:
            outputs[output["name"]] = response.body[at:at + size]
            at += size
    assert at == len(response.body), f"reply has {len(response.body) - at} bytes left over"
    return document, outputs


class BinaryTest(harness.ServerTestCase):
    @classmethod
    def setUpClass(cls):
        cls.tempdir = tempfile.TemporaryDirectory(prefix="oxs-binary-")
        data = harness.test_data_dir()
        cls.repo = harness.make_repository(
            os.path.join(cls.tempdir.name, "repo"),
            {name: os.path.join(data, name + ".onnx")
             for name in ("identity", "scale", "strings", "matrix", "scalar")})

    @classmethod
    def tearDownClass(cls):
        cls.tempdir.cleanup()

    def setUp(self):
        self.server = self.start_server(["--model-repository", self.repo])

    def post(self, model, body, headers):
        return self.server.request("POST", f"/v2/models/{model}/infer", body, headers)

    def post_binary(self, model, document, chunks):
        body, headers = binary_request(document, chunks)
        return self.post(model, body, headers)

    def expect_error(self, response, phrases, context):
        self.assertErrorMentions(response, 400, phrases, context)

    # ---- every datatype, both directions ---------------------------------------------------

    def identity_inputs(self, binary):
        inputs, chunks = [], []
        for suffix, datatype, dtype, values in TYPES:
            entry = {"name": "x_" + suffix, "shape": list(SHAPE), "datatype": datatype}
            raw = wire(dtype, values)
            if binary:
                entry["parameters"] = {"binary_data_size": len(raw)}
                chunks.append(raw)
            else:
                entry["data"] = json_values(datatype, dtype, values)
            inputs.append(entry)
        return inputs, chunks

    def test_every_datatype_four_ways(self):
        for binary_in in (False, True):
            for binary_out in (False, True):
                with self.subTest(binary_in=binary_in, binary_out=binary_out):
                    inputs, chunks = self.identity_inputs(binary_in)
                    document = {"inputs": inputs, "parameters": {"binary_data_output": binary_out}}
                    response = self.post_binary("identity", document, chunks)
                    self.assertStatus(response, 200, "identity infer")
                    self.assertEqual(
                        response.header("Content-Type"),
                        "application/octet-stream" if binary_out else "application/json")
                    reply, blobs = split_reply(response)
                    outputs = {o["name"]: o for o in reply["outputs"]}
                    for suffix, datatype, dtype, values in TYPES:
                        name = "y_" + suffix
                        self.assertEqual(outputs[name]["datatype"], datatype)
                        self.assertEqual(outputs[name]["shape"], list(SHAPE))
                        if binary_out:
                            self.assertNotIn("data", outputs[name])
                            got = blobs[name]
                        else:
                            got = wire(dtype, from_json(datatype, outputs[name]["data"]))
                        self.assertEqual(got, wire(dtype, values), f"{name} bytes")

    def test_binary_output_per_output(self):
        inputs, chunks = self.identity_inputs(True)
        document = {"inputs": inputs, "parameters": {"binary_data_output": True},
                    "outputs": [{"name": "y_int8", "parameters": {"binary_data": False}},
                                {"name": "y_fp32"}]}
        response = self.post_binary("identity", document, chunks)
        self.assertStatus(response, 200)
        reply, blobs = split_reply(response)
        self.assertEqual([o["name"] for o in reply["outputs"]], ["y_int8", "y_fp32"])
        self.assertEqual(reply["outputs"][0]["data"], [-128, 127, 0, -1, 1, -127])
        self.assertEqual(blobs["y_fp32"], wire(np.float32, TYPES[11][3]))

        response = self.server.post_json("/v2/models/identity/infer", {
            "inputs": self.identity_inputs(False)[0],
            "outputs": [{"name": "y_uint16", "parameters": {"binary_data": True}}]})
        reply, blobs = split_reply(response)
        self.assertEqual(list(blobs), ["y_uint16"])
        self.assertEqual(blobs["y_uint16"], wire(np.uint16, TYPES[2][3]))

    # ---- BYTES -------------------------------------------------------------------------------

    def test_bytes_json_round_trip(self):
        texts = ["", "plain", "a\u0000b", "\u00e9\u4e2d\U0001f600", "quote \" and \\", ""]
        response = self.server.post_json("/v2/models/strings/infer", {
            "inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES",
                        "data": texts}]})
        self.assertStatus(response, 200)
        output = response.json()["outputs"][0]
        self.assertEqual((output["datatype"], output["shape"]), ("BYTES", [len(texts)]))
        self.assertEqual(output["data"], texts)

        # A zero-element tensor.
        response = self.server.post_json("/v2/models/strings/infer", {
            "inputs": [{"name": "text", "shape": [0], "datatype": "BYTES", "data": []}]})
        self.assertStatus(response, 200)
        self.assertEqual(response.json()["outputs"][0]["data"], [])

    def test_bytes_binary_round_trip(self):
        elements = [b"", b"\x00\xff\xfe", "\u4e2d".encode(), b"x" * 1000]
        raw = bytes_wire(elements)
        document = {"inputs": [{"name": "text", "shape": [4], "datatype": "BYTES",
                                "parameters": {"binary_data_size": len(raw)}}],
                    "outputs": [{"name": "text_out", "parameters": {"binary_data": True}}]}
        response = self.post_binary("strings", document, [raw])
        self.assertStatus(response, 200)
        reply, blobs = split_reply(response)
        self.assertEqual(reply["outputs"][0]["parameters"]["binary_data_size"], len(raw))
        self.assertEqual(blobs["text_out"], raw)

        # Bytes that are not UTF-8 cannot go back as a JSON string.
        document["outputs"] = [{"name": "text_out"}]
        response = self.post_binary("strings", document, [raw])
        self.expect_error(response, ["text_out", "element 1", "not valid UTF-8", "binary_data"],
                          "BYTES output that is not UTF-8 as JSON")

    def test_bytes_invalid_utf8_in_json(self):
        body = (b'{"inputs":[{"name":"text","shape":[3],"datatype":"BYTES",'
                b'"data":["ok","fine","bad\xc3("]}]}')
        response = self.post("strings", body, {"Content-Type": "application/json"})
        self.expect_error(response, ['input "text"', "index 2", "not valid UTF-8"],
                          "invalid UTF-8 in a BYTES element")

    def test_lone_surrogate_escape_rejected(self):
        """yajl turns an unpaired high surrogate escape into "?", so the server checks it."""
        for texts, phrases in [
            (r'["a","\ud800","c"]', ['input "text"', "index 1", "high surrogate"]),
            (r'["\ud83dx"]', ['input "text"', "index 0", "high surrogate"]),
            (r'["\udc00"]', ['input "text"', "index 0", "not valid UTF-8"]),
        ]:
            with self.subTest(texts):
                body = ('{"inputs":[{"name":"text","shape":[%d],"datatype":"BYTES","data":%s}]}'
                        % (texts.count(",") + 1, texts)).encode()
                response = self.post("strings", body, {"Content-Type": "application/json"})
                self.expect_error(response, phrases, f"BYTES {texts}")
        response = self.post("strings", rb'{"id":"\ud800","inputs":[]}',
                             {"Content-Type": "application/json"})
        self.expect_error(response, ["id:", "high surrogate"], "lone surrogate in id")
        # A valid pair and a literal question mark both pass.
        response = self.server.post_json("/v2/models/strings/infer", {
            "inputs": [{"name": "text", "shape": [2], "datatype": "BYTES",
                        "data": ["\U0001f600?", "what?\n"]}]})
        self.assertStatus(response, 200)
        self.assertEqual(response.json()["outputs"][0]["data"], ["\U0001f600?", "what?\n"])

    def test_bool_bytes_checked(self):
        document = {"inputs": [], "parameters": {"binary_data_output": True}}
        inputs, chunks = self.identity_inputs(True)
        chunks[0] = bytes([1, 0, 2, 1, 0, 0])
        document["inputs"] = inputs
        self.expect_error(self.post_binary("identity", document, chunks),
                          ['"x_bool"', "element 2", "byte 2", "0 or 1"], "BOOL byte 2")

    def test_bytes_length_prefixes_checked(self):
        cases = [
            ("prefix past the end", struct.pack("<I", 100) + b"abc", 1,
             ['"text"', "element 0", "100 bytes", "3 remain"]),
            ("bytes left over", bytes_wire([b"ab"]) + b"zz", 1,
             ['"text"', "8 bytes", "end after 6"]),
            ("too few elements", bytes_wire([b"ab"]), 2,
             ['"text"', "6 bytes", "hold 1 elements", "needs 2"]),
            ("cut inside a length", bytes_wire([b"ab"]) + b"\x01", 2,
             ['"text"', "inside the length of element 1", "needs 2 elements"]),
        ]
        for label, raw, count, phrases in cases:
            with self.subTest(label):
                document = {"inputs": [{"name": "text", "shape": [count], "datatype": "BYTES",
                                        "parameters": {"binary_data_size": len(raw)}}]}
                self.expect_error(self.post_binary("strings", document, [raw]), phrases, label)

    # ---- sizes of the extension --------------------------------------------------------------

    def scale_document(self, size, rows=1, **extra):
        entry = {"name": "x", "shape": [rows, 4], "datatype": "FP32",
                 "parameters": {"binary_data_size": size}}
        entry.update(extra)
        return {"inputs": [entry]}

    def test_size_mismatches(self):
        four = wire(np.float32, [1, 2, 3, 4])
        cases = [
            ("size against shape", self.scale_document(12), [four[:12]],
             ['"x"', "binary_data_size is 12", "[1,4]", "needs 16 bytes"]),
            ("size past the body", self.scale_document(32), [four],
             ['"x"', "binary_data_size is 32", "only 16 bytes"]),
            ("bytes left over", self.scale_document(16), [four, b"\x00" * 5],
             ["21 bytes of binary data", "add up to 16"]),
            ("data and binary_data_size", self.scale_document(16, data=[1, 2, 3, 4]), [four],
             ['"x"', "both \"data\" and parameters.binary_data_size"]),
            ("negative size", self.scale_document(-1), [],
             ["inputs[0].parameters.binary_data_size", "-1"]),
            ("size as a string", self.scale_document("16"), [four],
             ["inputs[0].parameters.binary_data_size", '"16"', "expected a byte count"]),
        ]
        for label, document, chunks, phrases in cases:
            with self.subTest(label):
                self.expect_error(self.post_binary("scale", document, chunks), phrases, label)

    def test_header_length_checked(self):
        body = b'{"inputs":[]}'
        for value, phrases in [("99", ["Inference-Header-Content-Length is 99", "only 13 bytes"]),
                               ("-1", ["Inference-Header-Content-Length", '"-1"', "not valid"]),
                               ("1x", ["Inference-Header-Content-Length", '"1x"', "not valid"])]:
            with self.subTest(value):
                response = self.post("scale", body, {"Inference-Header-Content-Length": value})
                self.expect_error(response, phrases, f"header {value}")

    def test_binary_without_header(self):
        document = self.scale_document(16)
        response = self.server.post_json("/v2/models/scale/infer", document)
        self.expect_error(response, ['"x"', "binary_data_size is 16", "only 0 bytes",
                                     "Inference-Header-Content-Length"],
                          "binary_data_size without binary data")

    def test_header_cutting_json(self):
        body = b'{"inputs":[]}' + b"\x00" * 4
        response = self.post("scale", body, {"Inference-Header-Content-Length": "5"})
        self.expect_error(response, ["invalid JSON", "first 5 bytes",
                                     "Inference-Header-Content-Length"], "header cuts the JSON")

    # ---- raw bodies --------------------------------------------------------------------------

    def test_raw_body(self):
        values = np.arange(8, dtype=np.float32)
        response = self.post("scale", values.tobytes(), {"Inference-Header-Content-Length": "0"})
        self.assertStatus(response, 200)
        reply, blobs = split_reply(response)
        self.assertEqual(reply["outputs"][0]["shape"], [2, 4])
        self.assertEqual(np.frombuffer(blobs["y"], dtype="<f4").tolist(),
                         (values * 2 + 1).tolist())

        raw = bytes_wire([b"a", b"", b"\x00"])
        response = self.post("strings", raw, {"Inference-Header-Content-Length": "0"})
        self.assertStatus(response, 200)
        reply, blobs = split_reply(response)
        self.assertEqual(reply["outputs"][0]["shape"], [3])
        self.assertEqual(blobs["text_out"], raw)

    def test_raw_body_errors(self):
        header = {"Inference-Header-Content-Length": "0"}
        cases = [
            ("scale", b"\x00" * 10, ['"x"', "10 bytes", "FP32", "4 bytes"]),
            ("scale", b"\x00" * 12, ['"x"', "3 elements", "[-1,4]", "multiple of 4"]),
            ("matrix", b"\x00" * 16, ['"x"', "[-1,-1]", "unknown dims 1", "JSON header"]),
            ("identity", b"\x00" * 16, ["13 inputs", "JSON header"]),
            ("strings", struct.pack("<I", 9) + b"abc", ['"text"', "whole BYTES element"]),
        ]
        for model, body, phrases in cases:
            with self.subTest(model=model, size=len(body)):
                self.expect_error(self.post(model, body, header), phrases, f"raw body for {model}")

    def test_scalar_three_ways(self):
        """A rank-0 tensor has one element: JSON [v], 4 binary bytes, or a 4-byte raw body."""
        response = self.server.post_json("/v2/models/scalar/infer", {
            "inputs": [{"name": "x", "shape": [], "datatype": "FP32", "data": [1.5]}]})
        self.assertStatus(response, 200)
        self.assertEqual(response.json()["outputs"][0]["shape"], [])
        self.assertEqual(response.json()["outputs"][0]["data"], [3])

        document = {"inputs": [{"name": "x", "shape": [], "datatype": "FP32",
                                "parameters": {"binary_data_size": 4}}],
                    "parameters": {"binary_data_output": True}}
        reply, blobs = split_reply(self.post_binary("scalar", document, [wire(np.float32, [2])]))
        self.assertEqual(blobs["y"], wire(np.float32, [4]))

        response = self.post("scalar", wire(np.float32, [-1]),
                             {"Inference-Header-Content-Length": "0"})
        reply, blobs = split_reply(response)
        self.assertEqual(blobs["y"], wire(np.float32, [-2]))

        response = self.server.post_json("/v2/models/scalar/infer", {
            "inputs": [{"name": "x", "shape": [], "datatype": "FP32", "data": [1, 2]}]})
        self.expect_error(response, ['"x"', "more than 1 values"], "two values for a scalar")

    def test_predict_refuses_binary(self):
        response = self.server.request("POST", "/predict", b'{"data":[1,2,3,4]}',
                                       {"Inference-Header-Content-Length": "18"})
        self.expect_error(response, ["/predict"], "binary extension on /predict")


def json_values(datatype, dtype, values):
    if datatype in ("FP16", "BF16"):
        bits = np.array(values, dtype=np.uint16).astype(np.uint32)
        floats = (bits << 16).view(np.float32) if datatype == "BF16" else \
            np.array(values, dtype=np.uint16).view(np.float16).astype(np.float32)
        return [special(float(v)) for v in floats]
    if datatype in ("FP32", "FP64"):
        return [special(float(v)) for v in values]
    if datatype == "BOOL":
        return [bool(v) for v in values]
    return values


def special(value):
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def nearest_bf16(value):
    """The BF16 bits nearest to value (ties to even), from the exact decimal value: going
    through float32 first could round twice."""
    if value != value:
        return 0x7FC0
    if value in (float("inf"), float("-inf")):
        return 0x7F80 if value > 0 else 0xFF80
    start = int(np.array([value], dtype=np.float32).view(np.uint32)[0]) >> 16
    best = None
    for bits in (start - 1, start, start + 1):
        bits &= 0xFFFF
        candidate = float(np.array([bits << 16], dtype=np.uint32).view(np.float32)[0])
        if candidate != candidate or candidate in (float("inf"), float("-inf")):
            continue
        distance = abs(Fraction(candidate) - Fraction(value))
        if best is None or distance < best[0] or (distance == best[0] and bits % 2 == 0):
            best = (distance, bits)
    return best[1]


def from_json(datatype, data):
    """Turns JSON output values back into the wire's element values."""
    def number(v):
        return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}.get(v, v) \
            if isinstance(v, str) else v
    values = [number(v) for v in harness.flatten(data)]
    if datatype == "FP16":
        return np.array(values, dtype=np.float16).view(np.uint16).tolist()
    if datatype == "BF16":
        return [nearest_bf16(v) for v in values]
    if datatype == "BOOL":
        return [1 if v else 0 for v in values]
    return values


if __name__ == "__main__":
    unittest.main(verbosity=2)
