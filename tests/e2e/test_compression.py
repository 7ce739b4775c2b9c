#!/usr/bin/python3
"""Compressed request bodies (Content-Encoding: gzip and deflate).

A gzip or deflate body gets the same response as the plain one. The decompressed size is capped
by --max-request-bytes: a small compressed body that inflates past it gets 413 without being
inflated in full, and the server serves normally right after. Corrupt data gets 400 and an
unknown coding 415."""
import gzip
import json
import os
import sys
import time
import unittest
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

LIMIT = 1 << 20  # --max-request-bytes for these tests


class CompressionTest(harness.ServerTestCase):
    def setUp(self):
        self.server = self.start_server(["--max-request-bytes", str(LIMIT),
                                         os.path.join(harness.test_data_dir(), "scale.onnx")])
        self.body = json.dumps({"inputs": [harness.infer_input(
            "x", "FP32", np.arange(8, dtype=np.float32).reshape(2, 4))]}).encode()

    def post(self, body, encoding):
        headers = {"Content-Type": "application/json"}
        if encoding is not None:
            headers["Content-Encoding"] = encoding
        return self.server.request("POST", "/v2/models/scale/infer", body, headers)

    def test_gzip_and_deflate_match_plain(self):
        plain = self.post(self.body, None)
        self.assertStatus(plain, 200, "plain body")
        expected = plain.json()["outputs"]
        for encoding, data in (("gzip", gzip.compress(self.body)),
                               ("deflate", zlib.compress(self.body)),
                               ("GZip", gzip.compress(self.body)),
                               ("identity", self.body)):
            response = self.post(data, encoding)
            self.assertStatus(response, 200, f"Content-Encoding: {encoding}")
            self.assertEqual(response.json()["outputs"], expected, f"outputs with {encoding}")

    def test_bomb_rejected_with_413(self):
        # About 64 KiB of gzip that inflates to 64 MiB of spaces, 64 times the limit.
        bomb = gzip.compress(b" " * (64 << 20), compresslevel=9)
        self.assertLess(len(bomb), LIMIT, "the compressed body fits the limit")
        started = time.monotonic()
        response = self.post(bomb, "gzip")
        self.assertErrorMentions(response, 413, ["--max-request-bytes", str(LIMIT)],
                                 "a body that inflates past the limit")
        print(f"note: bomb of {len(bomb)} bytes answered in "
              f"{time.monotonic() - started:.3f} s", file=sys.stderr)
        self.assertStatus(self.post(self.body, None), 200, "a normal request right after")

    def test_body_at_limit_accepted(self):
        # JSON padded with spaces to exactly the limit after decompression.
        padded = self.body + b" " * (LIMIT - len(self.body))
        self.assertEqual(len(padded), LIMIT)
        self.assertStatus(self.post(gzip.compress(padded), "gzip"), 200,
                          "a body of exactly --max-request-bytes")

    def test_corrupt_and_unknown_codings(self):
        compressed = gzip.compress(self.body)
        self.assertErrorMentions(self.post(compressed[:len(compressed) // 2], "gzip"), 400,
                                 ["gzip"], "a cut gzip stream")
        self.assertErrorMentions(self.post(b"not compressed at all", "deflate"), 400,
                                 ["deflate"], "data that is not deflate")
        self.assertErrorMentions(self.post(self.body, "br"), 415, ["br", "gzip"],
                                 "an unsupported coding")
        self.assertStatus(self.post(self.body, None), 200, "a normal request right after")


if __name__ == "__main__":
    unittest.main(verbosity=2)
