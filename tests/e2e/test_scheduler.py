#!/usr/bin/python3
"""The per-model scheduler end to end: config.json and auto-complete through
GET /v2/models/{name}/config, batching that gives each request exactly what it gets alone,
queue deadlines (504), priorities, cancellation when a client disconnects, and warmup."""
import concurrent.futures
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

# Sample models with a batch dim, and the input shape each request sends (small, so that
# hundreds of requests stay quick on two cores).
BATCHED_SAMPLES = {
    "ocr_cls": ("ch_ppocr_mobile_v2.0_cls_infer.onnx", [1, 3, 48, 64]),
    "ocr_rec": ("ch_PP-OCRv4_rec_infer.onnx", [1, 3, 48, 64]),
    "ocr_det": ("ch_PP-OCRv4_det_infer.onnx", [1, 3, 32, 32]),
}
CONCURRENT_REQUESTS = 200


def write_config(repo, name, config):
    with open(os.path.join(repo, name, "config.json"), "w") as f:
        json.dump(config, f)


def binary_request(name, shape, array):
    header = json.dumps({"inputs": [{"name": name, "shape": shape, "datatype": "FP32",
                                     "parameters": {"binary_data_size": array.nbytes}}],
                         "parameters": {"binary_data_output": True}}).encode()
    return header + array.tobytes(), {"Inference-Header-Content-Length": str(len(header))}


def reply_outputs(response):
    length = int(response.header("Inference-Header-Content-Length"))
    document = json.loads(response.body[:length])
    outputs, at = {}, length
    for output in document["outputs"]:
        size = output["parameters"]["binary_data_size"]
        outputs[output["name"]] = (output["shape"], response.body[at:at + size])
        at += size
    return outputs


class SchedulerTest(harness.ServerTestCase):
    def setUp(self):
        self.tempdir = tempfile.TemporaryDirectory(prefix="oxs-scheduler-")
        self.addCleanup(self.tempdir.cleanup)
        self.repo = os.path.join(self.tempdir.name, "repo")

    def make_repo(self, models):
        """models: NAME -> model file path; files are copied, as a repository expects."""
        for name, path in models.items():
            folder = os.path.join(self.repo, name, "1")
            os.makedirs(folder, exist_ok=True)
            shutil.copy(path, os.path.join(folder, "model.onnx"))

    def test_config_in_effect_and_auto_complete(self):
        self.make_repo({"ocr_cls": os.path.join(harness.models_dir(), BATCHED_SAMPLES["ocr_cls"][0]),
                        "vad": os.path.join(harness.models_dir(), "silero_vad.onnx"),
                        "scale": os.path.join(harness.test_data_dir(), "scale.onnx")})
        write_config(self.repo, "scale", {"max_batch_size": 4, "dynamic_batching": {
            "max_queue_delay_us": 300, "priority_levels": 2},
            "instance_group": [{"count": 1}, {"count": 2, "kind": "gpu", "gpus": [1]}],
            "allow_cpu_fallback": True})
        server = self.start_server(["--model-repository", self.repo, "--workers", "1"])

        cls = server.get("/v2/models/ocr_cls/config").json()
        self.assertEqual(cls["from_file"], False)
        self.assertEqual(cls["max_batch_size"], 8, f"auto-completed ocr_cls config {cls}")
        self.assertIsNotNone(cls["dynamic_batching"], f"ocr_cls config {cls}")
        vad = server.get("/v2/models/vad/config").json()
        self.assertEqual(vad["max_batch_size"], 0, f"silero_vad has no batch dim: {vad}")
        self.assertIsNone(vad["dynamic_batching"])
        scale = server.get("/v2/models/scale/config").json()
        self.assertEqual(scale["from_file"], True)
        self.assertEqual(scale["max_batch_size"], 4)
        self.assertEqual(scale["dynamic_batching"]["max_queue_delay_us"], 300)
        self.assertEqual(scale["dynamic_batching"]["priority_levels"], 2)
        # No GPU here: allow_cpu_fallback places the gpu group's instances on the CPU.
        self.assertEqual(scale["instance_group"], [{"count": 1, "kind": "cpu", "gpus": []},
                                                   {"count": 2, "kind": "cpu", "gpus": []}])
        started = server.find_logs(msg="model scheduler started", model="scale")
        self.assertEqual(len(started), 1, f"scheduler log lines {started}")
        self.assertEqual(started[0]["instances"], 3)
        self.assertEqual(started[0]["placement"], "cpu,cpu,cpu")
        self.assertEqual(scale["version_policy"], {"latest": {"num_versions": 1}})

        # max_batch_size from config.json bounds every request.
        response = server.infer("scale", [("x", "FP32", np.zeros((5, 4), np.float32))])
        self.assertErrorMentions(response, 400, ["dim 0 is 5", "max_batch_size 4"],
                                 "request larger than max_batch_size")
        response = server.infer("scale", [("x", "FP32", np.zeros((4, 4), np.float32))])
        self.assertStatus(response, 200)

    def test_invalid_config_makes_model_unavailable(self):
        self.make_repo({"scale": os.path.join(harness.test_data_dir(), "scale.onnx")})
        write_config(self.repo, "scale", {"dynamic_batching": {"max_queue_delay_us": -5}})
        server = self.start_server(["--model-repository", self.repo])
        health = {m["name"]: m for m in server.get("/healthz").json()["models"]}
        self.assertEqual(health["scale"]["state"], "UNAVAILABLE")
        self.assertIn("dynamic_batching.max_queue_delay_us: value -5 is out of range",
                      health["scale"]["reason"])

    def test_model_config_flag_and_warmup(self):
        config = os.path.join(self.tempdir.name, "scale.json")
        with open(config, "w") as f:
            json.dump({"max_batch_size": 2, "warmup": [{"inputs": [{
                "name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}]}, f)
        server = self.start_server([os.path.join(harness.test_data_dir(), "scale.onnx"),
                                    "--model-config", config])
        self.assertEqual(server.get("/v2/models/scale/config").json()["max_batch_size"], 2)
        self.assertEqual(len(server.get("/v2/models/scale/config").json()["warmup"]), 1)

        with open(config, "w") as f:
            json.dump({"warmup": [{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32",
                                               "data": [1, 2, 3]}]}]}, f)
        server = self.start_server([os.path.join(harness.test_data_dir(), "scale.onnx"),
                                    "--model-config", config])
        health = server.get("/healthz").json()["models"][0]
        self.assertEqual(health["state"], "UNAVAILABLE")
        self.assertIn("warmup[0]", health["reason"])
        self.assertIn("[1,3]", health["reason"])

    def test_batched_results_equal_alone(self):
        """200 concurrent requests through the batcher get exactly what each gets alone."""
        models = {name: os.path.join(harness.models_dir(), file)
                  for name, (file, _) in BATCHED_SAMPLES.items()}
        self.make_repo(models)
        for name in models:
            write_config(self.repo, name, {"dynamic_batching": {"max_queue_delay_us": 5000},
                                           "instance_group": [{"count": 1}]})
        server = self.start_server(["--model-repository", self.repo, "--http-threads", "2"])
        rng = np.random.default_rng(7)
        for name, (_, shape) in BATCHED_SAMPLES.items():
            with self.subTest(model=name):
                arrays = [rng.random(shape, dtype=np.float32) for _ in range(CONCURRENT_REQUESTS)]

                def send(index):
                    body, headers = binary_request("x", shape, arrays[index])
                    headers["X-Request-ID"] = f"{name}-batched-{index}"
                    return server.request("POST", f"/v2/models/{name}/infer", body, headers)

                with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
                    batched = list(pool.map(send, range(CONCURRENT_REQUESTS)))
                sizes = []
                for index, response in enumerate(batched):
                    self.assertStatus(response, 200, f"{name} request {index}")
                for index in range(CONCURRENT_REQUESTS):
                    body, headers = binary_request("x", shape, arrays[index])
                    alone = server.request("POST", f"/v2/models/{name}/infer", body, headers)
                    self.assertStatus(alone, 200, f"{name} request {index} alone")
                    self.assertEqual(reply_outputs(batched[index]), reply_outputs(alone),
                                     f"{name} request {index}: batched output differs from alone")
                    record = server.wait_for_log(
                        lambda r, i=index: r.get("request_id") == f"{name}-batched-{i}"
                        and "batch_size" in r, 5)
                    if record is not None:
                        sizes.append(int(record["batch_size"]))
                self.assertTrue(any(size > 1 for size in sizes),
                                f"{name}: no request ran in a batch; batch sizes {sorted(set(sizes))}")

    def slow_server(self, config, extra=()):
        self.make_repo({"slow": os.path.join(harness.test_data_dir(), "slow.onnx"),
                        "scale": os.path.join(harness.test_data_dir(), "scale.onnx")})
        write_config(self.repo, "slow", config)
        return self.start_server(["--model-repository", self.repo, *extra])

    def test_deadline_passes_in_queue(self):
        server = self.slow_server({"instance_group": [{"count": 1}]})
        rounds = harness.calibrate_slow_rounds(server, 1.5)
        long_body = harness.slow_body(rounds)
        holder = threading.Thread(target=server.post_json,
                                  args=("/v2/models/slow/infer", long_body), daemon=True)
        holder.start()
        time.sleep(0.3)

        # Both wait behind the holder. A timed-out request completes, without running, when the
        # instance next takes work.
        body = json.loads(harness.slow_body(1))
        body["parameters"] = {"timeout": 50000}
        requests = {
            "deadline-header": (harness.slow_body(1), {"X-Request-Timeout-Ms": "100"}),
            "deadline-parameter": (json.dumps(body), {}),
        }
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            futures = {rid: pool.submit(server.post_json, "/v2/models/slow/infer", payload,
                                        dict(headers, **{"X-Request-ID": rid}))
                       for rid, (payload, headers) in requests.items()}
            responses = {rid: future.result() for rid, future in futures.items()}

        self.assertErrorMentions(responses["deadline-header"], 504,
                                 ["deadline of 100000 us", "before it ran"], "header deadline")
        self.assertErrorMentions(responses["deadline-parameter"], 504, ["deadline of 50000 us"],
                                 "parameter deadline")
        record = server.wait_for_log(lambda r: r.get("request_id") == "deadline-parameter"
                                     and "compute_us" in r, 5)
        self.assertEqual(int(record["compute_us"]), 0, f"a timed-out request ran: {record}")

        # Invalid deadlines get 400.
        body["parameters"] = {"timeout": 2**63 - 1}
        response = server.post_json("/v2/models/slow/infer", json.dumps(body))
        self.assertErrorMentions(response, 400, ["timeout", "out of range", "one hour"],
                                 "a timeout past one hour")
        response = server.post_json("/v2/models/slow/infer", harness.slow_body(1),
                                    headers={"X-Request-Timeout-Ms": "soon"})
        self.assertErrorMentions(response, 400, ["X-Request-Timeout-Ms", '"soon"'], "bad header")
        holder.join(60)

    def test_priority_served_first(self):
        server = self.slow_server({"dynamic_batching": {"priority_levels": 2},
                                   "instance_group": [{"count": 1}]})
        rounds = harness.calibrate_slow_rounds(server, 1.0)
        finished = []
        lock = threading.Lock()

        def send(label, priority, body):
            document = json.loads(body)
            document["parameters"] = {"priority": priority}
            response = server.post_json("/v2/models/slow/infer", json.dumps(document))
            with lock:
                finished.append((label, response.status))

        threads = [threading.Thread(target=send, args=("holder", 2, harness.slow_body(rounds)))]
        threads[0].start()
        time.sleep(0.3)
        for i in range(3):
            threads.append(threading.Thread(target=send, args=(f"low-{i}", 2,
                                                               harness.slow_body(rounds // 4))))
            threads[-1].start()
            time.sleep(0.05)
        threads.append(threading.Thread(target=send, args=("high", 1, harness.slow_body(1))))
        threads[-1].start()
        for thread in threads:
            thread.join(60)
        order = [label for label, _ in finished]
        self.assertTrue(all(status == 200 for _, status in finished), f"statuses {finished}")
        self.assertLess(order.index("high"), order.index("low-0"),
                        f"the high-priority request did not pass the queued low ones: {order}")
        response = server.post_json("/v2/models/slow/infer", json.dumps(
            dict(json.loads(harness.slow_body(1)), parameters={"priority": 3})))
        self.assertErrorMentions(response, 400, ["priority", "3", "expected 1 to 2"], "priority 3")

    def test_disconnect_cancels_queued_and_running(self):
        server = self.slow_server({"instance_group": [{"count": 1}]})
        rounds = harness.calibrate_slow_rounds(server, 2.0)

        def open_request(request_id, body):
            sock = socket.create_connection((harness.HOST, server.port), timeout=30)
            head = (f"POST /v2/models/slow/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    f"X-Request-ID: {request_id}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n")
            sock.sendall(head.encode() + (body if isinstance(body, bytes) else body.encode()))
            return sock

        running = open_request("cancel-running", harness.slow_body(rounds))
        time.sleep(0.4)
        queued = open_request("cancel-queued", harness.slow_body(rounds))
        time.sleep(0.2)
        started = time.monotonic()
        queued.close()
        running.close()
        record = server.wait_for_log(lambda r: r.get("request_id") == "cancel-queued"
                                     and "status" in r, 10)
        self.assertIsNotNone(record, "no log line for the canceled queued request")
        self.assertEqual(int(record["status"]), 499, f"queued request: {record}")
        self.assertEqual(int(record["compute_us"]), 0, f"the canceled request ran: {record}")
        record = server.wait_for_log(lambda r: r.get("request_id") == "cancel-running"
                                     and "status" in r, 10)
        self.assertIsNotNone(record, "no log line for the canceled running request")
        self.assertEqual(int(record["status"]), 499, f"running request: {record}")
        # Terminated well before its two seconds of compute were over.
        self.assertLess(time.monotonic() - started, 1.5, f"running request: {record}")
        response = server.post_json("/v2/models/slow/infer", harness.slow_body(1))
        self.assertStatus(response, 200, "a request after the cancellations")


if __name__ == "__main__":
    unittest.main(verbosity=2)
