#!/usr/bin/python3
"""Trace context, the trace file and logging controls.

A valid W3C traceparent header comes back in the response and its ids go into the request's log
line; an invalid one is ignored. With --trace-file, each request writes one JSON line whose
timestamps follow the request's steps in order. GET and POST /v2/logging read and change the
log level and format at run time."""
import json
import os
import sys
import tempfile
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
STEPS = ["received_us", "queued_us", "batch_start_us", "compute_start_us", "compute_end_us",
         "outputs_ready_us", "sent_us"]


class TraceTest(harness.ServerTestCase):
    def test_traceparent_and_trace_file(self):
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "trace.jsonl")
            server = self.start_server(["--trace-file", path,
                                        os.path.join(harness.test_data_dir(), "scale.onnx")])
            body = {"inputs": [harness.infer_input("x", "FP32", np.ones((2, 4), np.float32))]}
            response = server.post_json("/v2/models/scale/infer", body,
                                        headers={"traceparent": TRACEPARENT,
                                                 "X-Request-ID": "traced-1"})
            self.assertStatus(response, 200, "request with a traceparent")
            self.assertEqual(response.headers.get("traceparent"), TRACEPARENT,
                             "traceparent echoed in the response")
            plain = server.post_json("/v2/models/scale/infer", body,
                                     headers={"traceparent": "00-zz-11-01",
                                              "X-Request-ID": "traced-2"})
            self.assertStatus(plain, 200, "an invalid traceparent is ignored")
            self.assertIsNone(plain.headers.get("traceparent"), "no echo of an invalid value")

            record = server.wait_for_log(lambda r: r.get("request_id") == "traced-1"
                                         and r.get("msg") == "request", 10)
            self.assertIsNotNone(record, "request log line")
            self.assertEqual(record.get("trace_id"), TRACEPARENT[3:35], f"trace_id in {record}")
            self.assertEqual(record.get("parent_id"), TRACEPARENT[36:52], f"parent_id in {record}")
            server.stop()

            with open(path) as f:
                lines = [json.loads(line) for line in f]
        by_id = {line["request_id"]: line for line in lines}
        traced = by_id["traced-1"]
        self.assertEqual(traced["trace_id"], TRACEPARENT[3:35], f"trace file line {traced}")
        self.assertEqual(traced["model"], "scale")
        self.assertEqual(traced["status"], 200)
        times = [traced[step] for step in STEPS]
        self.assertEqual(times, sorted(times), f"steps out of order in {traced}")
        self.assertNotIn("trace_id", by_id["traced-2"], "no trace id without a valid header")


class LoggingTest(harness.ServerTestCase):
    def test_logging_read_and_changed(self):
        server = self.start_server([os.path.join(harness.test_data_dir(), "scale.onnx")])
        settings = server.get("/v2/logging").json()
        self.assertEqual(settings, {"log_file": "", "log_info": True, "log_warning": True,
                                    "log_error": True, "log_verbose_level": 0,
                                    "log_format": "json"})

        changed = server.post_json("/v2/logging", {"log_info": False})
        self.assertStatus(changed, 200, "turning info lines off")
        self.assertFalse(changed.json()["log_info"], f"settings after the change {changed.json()}")
        server.get("/v2", headers={"X-Request-ID": "quiet-1"})
        refused = server.post_json("/v2/logging", {"log_file": "/tmp/elsewhere.log"})
        self.assertErrorMentions(refused, 400, ["log_file"], "log_file over the network")
        inconsistent = server.post_json("/v2/logging", {"log_info": True, "log_warning": False})
        self.assertErrorMentions(inconsistent, 400, ["log_warning"], "info without warnings")
        unknown = server.post_json("/v2/logging", {"log_colour": "red"})
        self.assertErrorMentions(unknown, 400, ["log_colour"], "an unknown setting")
        self.assertStatus(server.post_json("/v2/logging", {"log_info": True}), 200, "info on")
        server.get("/v2", headers={"X-Request-ID": "loud-1"})

        self.assertIsNotNone(server.wait_for_log(lambda r: r.get("request_id") == "loud-1", 10),
                             "request line once info is on again")
        self.assertEqual(server.find_logs(request_id="quiet-1"), [],
                         "request line while info was off")


if __name__ == "__main__":
    unittest.main(verbosity=2)
