#!/usr/bin/python3
"""Every datatype survives a round trip through the identity model exactly: the JSON text is
parsed straight into the typed tensor and printed back, including the extremes of each type and
INT64 values beyond 2^53. FP16 and BF16 texts are checked against an exact rational rounding,
and NaN and the infinities travel as the strings "NaN", "Infinity" and "-Infinity"."""
import ctypes
import json
import math
import os
import random
import sys
import unittest
from fractions import Fraction

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
    # Largest finite, smallest normal, smallest subnormal, negative zero, and two rounded values.
    ("fp16", "FP16", [65504.0, -65504.0, 6.103515625e-05, 5.960464477539063e-08, -0.0, 0.1]),
    ("bf16", "BF16", [3.3895313892515355e38, -3.3895313892515355e38, 1.1754943508222875e-38,
                      9.183549615799121e-41, -0.0, 0.1]),
]

# Significand bits (with the implicit bit), smallest normal exponent, largest exponent.
FLOAT16_FORMATS = {"FP16": (11, -14, 15), "BF16": (8, -126, 127)}
SPECIAL_BITS = {"FP16": {"Infinity": 0x7C00, "-Infinity": 0xFC00},
                "BF16": {"Infinity": 0x7F80, "-Infinity": 0xFF80}}


def float16_bits(text, datatype):
    """Round the decimal text to FP16 or BF16 bits, to nearest with ties to even, computed with
    exact rationals; None when it rounds beyond the largest finite value."""
    if text in SPECIAL_BITS[datatype]:
        return SPECIAL_BITS[datatype][text]
    precision, emin, emax = FLOAT16_FORMATS[datatype]

    value = Fraction(text)
    sign = 0x8000 if text.lstrip().startswith("-") else 0
    magnitude = abs(value)
    if magnitude == 0:
        return sign
    exponent = magnitude.numerator.bit_length() - magnitude.denominator.bit_length()
    if Fraction(2) ** exponent > magnitude:
        exponent -= 1
    if Fraction(2) ** (exponent + 1) <= magnitude:
        exponent += 1
    exponent = max(exponent, emin)

    scaled = magnitude / Fraction(2) ** (exponent - precision + 1)
    significand = math.floor(scaled)
    remainder = scaled - significand
    if remainder > Fraction(1, 2) or (remainder == Fraction(1, 2) and significand % 2 == 1):
        significand += 1
    if significand == 2 ** precision:
        significand //= 2
        exponent += 1
    if exponent > emax:
        return None

    hidden = 2 ** (precision - 1)
    if significand < hidden:
        return sign | significand
    return sign | ((exponent - emin + 1) << (precision - 1)) | (significand - hidden)


def data_texts(body, name):
    """The element texts of output name's flat "data" array, exactly as the server wrote them."""
    marker = f'"name":"{name}"'
    start = body.index(marker)
    start = body.index('"data":[', start) + len('"data":[')
    end = body.index("]", start)
    return body[start:end].split(",") if end > start else []

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
                elif datatype in ("FP16", "BF16"):
                    # From the text, because Python's json reads -0 as the integer 0.
                    texts = data_texts(response.body.decode(), "y_" + suffix)
                    expected = [float16_bits(repr(v), datatype) for v in values]
                    self.assertEqual([float16_bits(t, datatype) for t in texts], expected,
                                     f"y_{suffix} data {texts}")
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

    def infer_texts(self, texts_by_suffix, columns):
        """Send the given number texts verbatim for some inputs (the rest get their defaults
        reshaped to match) and return the response body text."""
        rows = max(len(t) for t in texts_by_suffix.values()) // columns
        overrides = {}
        for suffix, datatype, values in VALUES:
            overrides[suffix] = {"name": "x_" + suffix, "shape": [rows, columns],
                                 "datatype": datatype, "data": (values * rows * columns)[:rows * columns]}
            if suffix in texts_by_suffix:
                overrides[suffix]["data"] = "TEXTS_" + suffix
        body = json.dumps({"inputs": all_inputs(overrides)})
        for suffix, texts in texts_by_suffix.items():
            self.assertEqual(len(texts), rows * columns, f"{suffix} text count")
            body = body.replace(f'"TEXTS_{suffix}"', "[" + ",".join(texts) + "]", 1)
        response = self.server.post_json(f"/v2/models/{MODEL}/infer", body)
        self.assertStatus(response, 200, "identity infer with verbatim texts")
        return response.body.decode()

    def test_float16_rounds_like_exact_arithmetic(self):
        rng = random.Random(20261204)
        cases = {"FP16": ["1.00048828125", "1.000488281250000000000000000001",
                          "1.001464843749999999999999999999", "65519.99999999999999999999",
                          "2.98023223876953125e-8", "2.98023223876953125000000000000001e-8",
                          "8.94069671630859375e-8", "-0", "-1e-30", "6.1e-05", "65504", "0.1"],
                 "BF16": ["1.00390625", "1.00390625000000000000000000001", "1.01171875",
                          "1.01171874999999999999999999999", "3.3895313892515355e38",
                          "339617752923046005526922703901628039167.9999", "9.2e-41", "-0.0",
                          "1e-50", "3.14159", "0.1", "-2.5e-3"]}
        for datatype, (precision, emin, emax) in FLOAT16_FORMATS.items():
            while len(cases[datatype]) < 1200:
                # Random midpoints, nudged by a tiny decimal amount or left exact, and random
                # short decimals across the whole range.
                kind = rng.randrange(3)
                exponent = rng.randrange(emin - precision + 1, emax)
                if kind < 2:
                    odd = rng.randrange(2 ** precision, 2 ** (precision + 1)) | 1
                    midpoint = Fraction(odd) * Fraction(2) ** (exponent - precision)
                    nudge = Fraction(rng.choice((-1, 0, 1)), 10 ** 40) * midpoint
                    value = midpoint + nudge
                    # Exact: the denominator divides 10^200 for every exponent drawn here.
                    text = f"{value.numerator * 10 ** 200 // value.denominator}e-200"
                else:
                    text = f"{rng.uniform(1, 10):.{rng.randrange(1, 8)}f}e{rng.randrange(-40, 39)}"
                if float16_bits(text, datatype) is not None:
                    cases[datatype].append(text)
        body = self.infer_texts({"fp16": cases["FP16"], "bf16": cases["BF16"]}, 12)
        for datatype, suffix in (("FP16", "fp16"), ("BF16", "bf16")):
            outputs = data_texts(body, "y_" + suffix)
            self.assertEqual(len(outputs), len(cases[datatype]), f"y_{suffix} element count")
            for text, output in zip(cases[datatype], outputs):
                self.assertEqual(float16_bits(output, datatype), float16_bits(text, datatype),
                                 f"{datatype} text {text} came back as {output}")

    def test_nan_and_infinity_strings(self):
        texts = ['"NaN"', '"Infinity"', '"-Infinity"', "1.5"]
        body = self.infer_texts({s: texts for s in ("fp16", "bf16", "fp32", "fp64")}, 4)
        for suffix in ("fp16", "bf16", "fp32", "fp64"):
            self.assertEqual(data_texts(body, "y_" + suffix), texts, f"y_{suffix} data")
        self.assertNotIn("null", body, "response still writes null for a float")

    def test_float_out_of_range_rejected(self):
        for suffix, text, limit in (("fp16", "70000", "65504"), ("fp16", "-65520", "65504"),
                                    ("bf16", "1e39", "3.3895314e+38"),
                                    ("fp32", "1e39", "3.40282347e+38"),
                                    ("fp64", "1e309", "1.7976931348623157e+308")):
            with self.subTest(suffix=suffix, text=text):
                document = {"inputs": all_inputs({suffix: {
                    "name": "x_" + suffix, "shape": list(SHAPE), "datatype": suffix.upper(),
                    "data": "TEXTS"}})}
                body = json.dumps(document).replace('"TEXTS"', f"[0, 1, 2, 3, {text}, 5]")
                response = self.server.post_json(f"/v2/models/{MODEL}/infer", body)
                self.assertStatus(response, 400, f"{suffix} value {text}")
                message = response.json().get("error", "")
                for part in (f'"x_{suffix}"', f"value {text} at index 4", "out of range", limit):
                    self.assertIn(part, message, f"error message for {suffix} {text}")

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
