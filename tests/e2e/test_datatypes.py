#!/usr/bin/python3
"""Every datatype survives a round trip through the identity model exactly: the JSON text is
parsed straight into the typed tensor and printed back, including the extremes of each type and
INT64 values beyond 2^53."""
import ctypes
import json
import os
import sys
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

MODEL = "identity"
SHAPE = (2, 3)

# Input suffix, KServe datatype, six values (the extremes of the type first).
F32 = np.finfo(np.float32)
F64 = np.finfo(np.float64)
VALUES = [
    ("bool", "BOOL", [True, False, True, True, False, False]),
    ("uint8", "UINT8", [0, 255, 1, 127, 128, 254]),
    ("uint16", "UINT16", [0, 65535, 1, 32767, 32768, 65534]),
    ("uint32", "UINT32", [0, 2**32 - 1, 1, 2**31 - 1, 2**31, 2**32 - 2]),
    ("uint64", "UINT64", [0, 2**64 - 1, 1, 2**53 + 1, 2**63, 2**64 - 2]),
    ("int8", "INT8", [-128, 127, 0, -1, 1, -127]),
    ("int16", "INT16", [-32768, 32767, 0, -1, 1, -32767]),
    ("int32", "INT32", [-2**31, 2**31 - 1, 0, -1, 1, -2**31 + 1]),
    ("int64", "INT64", [-2**63, 2**63 - 1, 9007199254740993, -9007199254740993, 0, 2**53]),
    ("fp32", "FP32", [float(F32.max), float(-F32.max), float(F32.tiny),
                      float(np.float32(1.4e-45)), float(np.float32(0.1)), float(np.float32(-1 / 3))]),
    ("fp64", "FP64", [float(F64.max), float(-F64.max), float(F64.tiny), 5e-324, 0.1, -1 / 3]),
]

_LIBC = ctypes.CDLL(None)
_LIBC.strtof.restype = ctypes.c_float
_LIBC.strtof.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p)]


def strtof(text):
    return np.float32(_LIBC.strtof(text.encode(), None))


def all_inputs(overrides=None):
    """KServe JSON inputs for every identity input, with overrides {suffix: input document}."""
    overrides = overrides or {}
    inputs = []
    for suffix, datatype, values in VALUES:
        name = "x_" + suffix
        if suffix in overrides:
            inputs.append(overrides[suffix])
        else:
            inputs.append({"name": name, "shape": list(SHAPE), "datatype": datatype, "data": values})
    return inputs


class DatatypesTest(harness.ServerTestCase):
    def setUp(self):
        self.server = self.start_server([os.path.join(harness.test_data_dir(), "identity.onnx")])

    def infer_raw(self, inputs):
        response = self.server.post_json(f"/v2/models/{MODEL}/infer", {"inputs": inputs})
        self.assertStatus(response, 200, "identity infer")
        return response

    def outputs_of(self, response):
        return {o["name"]: o for o in response.json()["outputs"]}

    def test_round_trip_every_datatype(self):
        response = self.infer_raw(all_inputs())
        outputs = self.outputs_of(response)
        for suffix, datatype, values in VALUES:
            with self.subTest(datatype=datatype):
                output = outputs.get("y_" + suffix)
                self.assertIsNotNone(output, f"output y_{suffix} missing from {sorted(outputs)}")
                self.assertEqual(output["datatype"], datatype, f"y_{suffix} datatype")
                self.assertEqual(output["shape"], list(SHAPE), f"y_{suffix} shape")
                data = list(harness.flatten(output["data"]))
                if datatype == "BOOL":
                    self.assertEqual(data, values, f"y_{suffix} data")
                    self.assertTrue(all(isinstance(v, bool) for v in data),
                                    f"y_{suffix} data {data} are not JSON booleans")
                elif datatype in ("FP32", "FP64"):
                    dtype = harness.NUMPY_DTYPES[datatype]
                    self.assertEqual(np.array(data, dtype=dtype).tolist(),
                                     np.array(values, dtype=dtype).tolist(), f"y_{suffix} data")
                else:
                    self.assertEqual([int(v) for v in data], values, f"y_{suffix} data")
                    self.assertTrue(all(isinstance(v, int) and not isinstance(v, bool) for v in data),
                                    f"y_{suffix} data {data} are not JSON integers")

    def test_int64_beyond_2_53_exact_in_text(self):
        response = self.infer_raw(all_inputs())
        text = response.body.decode()
        for literal in ("9007199254740993", "-9007199254740993", "9223372036854775807",
                        "-9223372036854775808", "18446744073709551615"):
            self.assertIn(literal, text, f"response text lacks {literal}")

    def test_fp32_equals_strtof_of_text(self):
        texts = ["0.1", "0.1000000000000000055511151231257827", "3.4028235e38", "1.4e-45",
                 "1e-46", "16777217", "-2.5e-3", "1.17549435e-38", "123456.789", "7",
                 "1E3", "-0.0"]
        rows = len(texts) // 3
        # Every input gets the shape [rows, 3], because the model names the same dims for all.
        overrides = {}
        for suffix, datatype, values in VALUES:
            overrides[suffix] = {"name": "x_" + suffix, "shape": [rows, 3], "datatype": datatype,
                                 "data": (values * rows)[:rows * 3]}
        overrides["fp32"]["data"] = "FP32_TEXTS"
        # Splice the number texts in verbatim, because json.dumps would reformat them.
        body = json.dumps({"inputs": all_inputs(overrides)})
        body = body.replace('"FP32_TEXTS"', "[" + ", ".join(texts) + "]", 1)
        response = self.server.post_json(f"/v2/models/{MODEL}/infer", body)
        self.assertStatus(response, 200, "identity infer with FP32 texts")
        output = self.outputs_of(response)["y_fp32"]
        actual = np.array(list(harness.flatten(output["data"])), dtype=np.float32)
        expected = np.array([strtof(t) for t in texts], dtype=np.float32)
        self.assertEqual(actual.size, expected.size, "y_fp32 element count")
        for text, a, e in zip(texts, actual, expected):
            self.assertEqual(float(a), float(e), f"FP32 text {text}: server {a!r}, strtof {e!r}")

    def test_nested_data(self):
        nested = {}
        for suffix, datatype, values in VALUES:
            nested[suffix] = {"name": "x_" + suffix, "shape": list(SHAPE), "datatype": datatype,
                              "data": [values[:3], values[3:]]}
        outputs = self.outputs_of(self.infer_raw(all_inputs(nested)))
        data = list(harness.flatten(outputs["y_int64"]["data"]))
        self.assertEqual([int(v) for v in data], VALUES[8][2], "y_int64 data from nested input")

    def test_selected_outputs(self):
        document = {"inputs": all_inputs(), "outputs": [{"name": "y_int8"}, {"name": "y_fp64"}]}
        response = self.server.post_json(f"/v2/models/{MODEL}/infer", document)
        self.assertStatus(response, 200, "identity infer with two requested outputs")
        self.assertEqual(sorted(self.outputs_of(response)), ["y_fp64", "y_int8"], "returned outputs")

    def test_request_id_echoed(self):
        document = {"id": "datatype-check-7", "inputs": all_inputs()}
        response = self.server.post_json(f"/v2/models/{MODEL}/infer", document)
        self.assertStatus(response, 200, "identity infer with id")
        body = response.json()
        self.assertEqual(body.get("id"), "datatype-check-7", "response id")
        self.assertEqual(body.get("model_name"), MODEL, "response model_name")
        self.assertEqual(str(body.get("model_version")), "1", "response model_version")

    def test_empty_tensor(self):
        empty = {}
        for suffix, datatype, _ in VALUES:
            empty[suffix] = {"name": "x_" + suffix, "shape": [0, 3], "datatype": datatype, "data": []}
        outputs = self.outputs_of(self.infer_raw(all_inputs(empty)))
        for suffix, _, _ in VALUES:
            self.assertEqual(outputs["y_" + suffix]["shape"], [0, 3], f"y_{suffix} shape")
            self.assertEqual(list(harness.flatten(outputs["y_" + suffix]["data"])), [],
                             f"y_{suffix} data")


if __name__ == "__main__":
    unittest.main(verbosity=2)
