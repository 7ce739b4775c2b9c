#!/usr/bin/python3
"""Sizes, counts and lengths that a request gives: negative, zero and huge values.

Each value a client controls and the server computes with (Content-Length, chunk sizes,
Inference-Header-Content-Length, binary_data_size, BYTES element lengths, shape dims, the
request deadline, version numbers) gets its edge values. Every bad one gets a 4xx status and a
message that names the field, and the server serves a normal request right after."""
import json
import os
import struct
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

HUGE = "99999999999999999999999"  # past 64 bits
SCALE_BODY = b'{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]}'


def post(path, body, headers=b""):
    return (b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + headers
            + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def binary_body(size_text, data_bytes):
    header = ('{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],'
              '"parameters":{"binary_data_size":%s}}]}' % size_text).encode()
    headers = b"Inference-Header-Content-Length: " + str(len(header)).encode() + b"\r\n"
    return post("/v2/models/scale/infer", header + b"\0" * data_bytes, headers)


def predict_shape(shape_text):
    return post("/models/scale/predict", ('{"data":[1,2,3,4],"shape":%s}' % shape_text).encode())


def infer_shape(shape_text):
    body = '{"inputs":[{"name":"x","datatype":"FP32","shape":%s,"data":[]}]}' % shape_text
    return post("/v2/models/matrix/infer", body.encode())


def raw_strings(body):
    return post("/v2/models/strings/infer", body, b"Inference-Header-Content-Length: 0\r\n")


# (name, raw request, expected status, words the error must contain)
CASES = [
    ("content-length negative",
     b"POST /v2/models/scale/infer HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
     400, ["content-length"]),
    ("content-length past 64 bits",
     b"POST /v2/models/scale/infer HTTP/1.1\r\nHost: x\r\nContent-Length: " + HUGE.encode()
     + b"\r\n\r\n", 400, ["content-length"]),
    ("content-length 2^63",
     b"POST /v2/models/scale/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 9223372036854775808"
     b"\r\n\r\n", 413, ["--max-request-bytes"]),
    ("chunk size past 64 bits",
     b"POST /v2/models/scale/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"ffffffffffffffffff\r\nab", 400, ["chunk size"]),
    ("chunk size 2^63",
     b"POST /v2/models/scale/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"8000000000000000\r\nab", 413, ["chunk", "--max-request-bytes"]),
    ("chunk size negative",
     b"POST /v2/models/scale/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"-1\r\nab", 400, ["chunk size"]),
    ("header length past 64 bits",
     post("/v2/models/scale/infer", SCALE_BODY,
          b"Inference-Header-Content-Length: " + HUGE.encode() + b"\r\n"),
     400, ["Inference-Header-Content-Length", HUGE]),
    ("header length negative",
     post("/v2/models/scale/infer", SCALE_BODY, b"Inference-Header-Content-Length: -1\r\n"),
     400, ["Inference-Header-Content-Length", "-1"]),
    ("header length past the body",
     post("/v2/models/scale/infer", SCALE_BODY,
          b"Inference-Header-Content-Length: 9223372036854775807\r\n"),
     400, ["Inference-Header-Content-Length", "9223372036854775807"]),
    ("binary_data_size zero", binary_body("0", 16), 400, ["binary_data_size", "0"]),
    ("binary_data_size negative", binary_body("-1", 16), 400, ["binary_data_size", "-1"]),
    ("binary_data_size past 64 bits", binary_body(HUGE, 16), 400, ["binary_data_size", HUGE]),
    ("binary_data_size 2^64-1", binary_body("18446744073709551615", 16), 400,
     ["binary_data_size", "18446744073709551615"]),
    ("binary_data_size past the body", binary_body("1000", 16), 400,
     ["binary_data_size", "1000"]),
    ("BYTES length 2^32-1", raw_strings(struct.pack("<I", 0xFFFFFFFF) + b"abc"), 400,
     ["text", "BYTES"]),
    ("BYTES length cut", raw_strings(struct.pack("<I", 5) + b"ab"), 400, ["text", "BYTES"]),
    ("BYTES length partial", raw_strings(b"\x01\x00"), 400, ["text", "BYTES"]),
    ("shape dim negative", infer_shape("[-1,4]"), 400, ["x", "-1"]),
    ("shape dim past 64 bits", infer_shape("[%s,4]" % HUGE), 400, ["shape", HUGE]),
    ("shape product past 64 bits", infer_shape("[4611686018427387904,4611686018427387904]"),
     400, ["shape"]),
    ("shape dim fractional", infer_shape("[1.5,4]"), 400, ["shape", "1.5"]),
    ("predict shape negative", predict_shape("[-1,4]"), 400, ["shape", "-1"]),
    ("predict shape zero", predict_shape("[0,4]"), 400, ["shape [0,4]"]),
    ("predict shape past 64 bits", predict_shape("[%s,4]" % HUGE), 400, ["shape", HUGE]),
    ("predict shape product huge", predict_shape("[4611686018427387904,4]"), 400, ["shape"]),
    ("deadline negative",
     post("/v2/models/scale/infer", SCALE_BODY, b"X-Request-Timeout-Ms: -1\r\n"),
     400, ["X-Request-Timeout-Ms", "-1"]),
    ("deadline past 64 bits",
     post("/v2/models/scale/infer", SCALE_BODY, b"X-Request-Timeout-Ms: " + HUGE.encode() + b"\r\n"),
     400, ["X-Request-Timeout-Ms", HUGE]),
    ("deadline parameter negative",
     post("/v2/models/scale/infer", b'{"parameters":{"timeout":-5},' + SCALE_BODY[1:]),
     400, ["parameters.timeout", "-5"]),
    ("deadline parameter huge",
     post("/v2/models/scale/infer", b'{"parameters":{"timeout":' + HUGE.encode() + b'},'
          + SCALE_BODY[1:]), 400, ["parameters.timeout"]),
    ("priority huge",
     post("/v2/models/scale/infer", b'{"parameters":{"priority":' + HUGE.encode() + b'},'
          + SCALE_BODY[1:]), 400, ["parameters.priority"]),
    ("version negative",
     b"GET /v2/models/scale/versions/-1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
     400, ["version", "-1"]),
    ("version zero",
     b"GET /v2/models/scale/versions/0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
     400, ["version", "0"]),
    ("version past 64 bits",
     b"GET /v2/models/scale/versions/" + HUGE.encode()
     + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400, ["version", HUGE]),
]


class SizeEdgeTest(harness.ServerTestCase):
    @classmethod
    def setUpClass(cls):
        cls.tempdir = tempfile.TemporaryDirectory(prefix="oxs-sizes-")
        data = harness.test_data_dir()
        repo = harness.make_repository(
            os.path.join(cls.tempdir.name, "repo"),
            {name: os.path.join(data, name + ".onnx") for name in ("scale", "strings", "matrix")})
        cls.server = harness.Server(["--model-repository", repo])

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.server.check_clean()
        cls.tempdir.cleanup()

    def test_edge_values(self):
        for name, request, status, words in CASES:
            with self.subTest(name):
                data = self.server.raw(request)
                self.assertNotEqual(data, b"", "the server answers")
                response = harness.parse_raw_response(data)
                self.assertEqual(response.status, status, response)
                error = response.json()["error"]
                for word in words:
                    self.assertIn(word, error)
                normal = self.server.post_json("/v2/models/scale/infer", SCALE_BODY)
                self.assertEqual(normal.status, 200, normal)
                self.assertEqual(normal.json()["outputs"][0]["data"], [3, 5, 7, 9])


if __name__ == "__main__":
    unittest.main(verbosity=2)
