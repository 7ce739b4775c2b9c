#!/usr/bin/python3
"""The server's outputs for each sample model equal ONNX Runtime run in-process (ort_reference)
on the same inputs: exact for integers, within 1e-6 relative for floats."""
import os
import sys
import tempfile
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

CLASSIFIER = "ch_ppocr_mobile_v2.0_cls_infer"
DETECTOR = "ch_PP-OCRv4_det_infer"
RECOGNIZER = "ch_PP-OCRv4_rec_infer"
VAD = "silero_vad"
SAMPLE_MODELS = [CLASSIFIER, DETECTOR, RECOGNIZER, VAD]

# Silero VAD takes frames of 1536 samples at 16 kHz and a state of [2, batch, 64].
VAD_FRAME = 1536
VAD_RATE = 16000


def model_path(name):
    return os.path.join(harness.models_dir(), name + ".onnx")


def image_input(seed, shape):
    """A deterministic image-like FP32 input in [-1, 1], as the OCR preprocessing produces."""
    rng = np.random.default_rng(seed)
    return (rng.random(shape, dtype=np.float32) * 2.0 - 1.0).astype(np.float32)


class SampleModelsTest(harness.ServerTestCase):
    @classmethod
    def setUpClass(cls):
        cls.tempdir = tempfile.TemporaryDirectory(prefix="oxs-e2e-samples-")
        cls.repository = harness.make_repository(
            os.path.join(cls.tempdir.name, "repo"), {name: model_path(name) for name in SAMPLE_MODELS})

    @classmethod
    def tearDownClass(cls):
        cls.tempdir.cleanup()

    def setUp(self):
        self.server = self.start_server(["--model-repository", self.repository])

    def metadata(self, model):
        response = self.server.get(f"/v2/models/{model}")
        self.assertStatus(response, 200, f"GET /v2/models/{model}")
        return response.json()

    def input_shape(self, model, input_name):
        for entry in self.metadata(model)["inputs"]:
            if entry["name"] == input_name:
                return entry["shape"]
        self.fail(f"model {model} metadata has no input {input_name!r}")

    def check_against_reference(self, model, inputs, expected_outputs=None, context=""):
        """Send inputs to the server and to ort_reference, and compare every output."""
        response = self.server.infer(model, inputs)
        self.assertStatus(response, 200, f"{context} infer {model}")
        body = response.json()
        self.assertEqual(body.get("model_name"), model, f"{context} model_name")
        server_outputs = {}
        for output in body["outputs"]:
            server_outputs[output["name"]] = (output["datatype"], harness.output_array(output))

        reference = harness.run_reference(model_path(model), inputs)
        self.assertEqual(sorted(server_outputs), sorted(reference),
                         f"{context} {model}: server output names vs reference output names")
        if expected_outputs is not None:
            self.assertEqual(sorted(server_outputs), sorted(expected_outputs),
                             f"{context} {model}: output names")

        failures = []
        for name, (ref_datatype, ref_values) in reference.items():
            datatype, values = server_outputs[name]
            if datatype != ref_datatype:
                failures.append(f"{name}: datatype {datatype}, reference {ref_datatype}")
                continue
            message = harness.compare_arrays(name, values, ref_values)
            if message:
                failures.append(message)
        if failures:
            self.fail(f"{context} {model}: server outputs differ from ONNX Runtime in-process:\n"
                      + "\n".join(failures))

    def test_classifier_matches_reference(self):
        x = image_input(1, (1, 3, 48, 192))
        self.check_against_reference(CLASSIFIER, [("x", "FP32", x)], ["softmax_0.tmp_0"])

    def test_classifier_batch_of_two(self):
        x = image_input(2, (2, 3, 48, 192))
        self.check_against_reference(CLASSIFIER, [("x", "FP32", x)], ["softmax_0.tmp_0"])

    def test_detector_matches_reference(self):
        x = image_input(3, (1, 3, 64, 64))
        self.check_against_reference(DETECTOR, [("x", "FP32", x)], ["sigmoid_0.tmp_0"])

    def test_recognizer_matches_reference(self):
        x = image_input(4, (1, 3, 48, 160))
        self.check_against_reference(RECOGNIZER, [("x", "FP32", x)], ["softmax_11.tmp_0"])

    def vad_inputs(self, samples, h, c):
        sr_shape = self.input_shape(VAD, "sr")
        sr = np.full(sr_shape, VAD_RATE, dtype=np.int64)
        return [("input", "FP32", samples), ("sr", "INT64", sr), ("h", "FP32", h), ("c", "FP32", c)]

    def test_vad_matches_reference(self):
        rng = np.random.default_rng(5)
        samples = (rng.standard_normal((1, VAD_FRAME)) * 0.1).astype(np.float32)
        zeros = np.zeros((2, 1, 64), dtype=np.float32)
        self.check_against_reference(VAD, self.vad_inputs(samples, zeros, zeros),
                                     ["output", "hn", "cn"])

    def test_vad_state_feeding(self):
        """Feed hn and cn back as h and c for three frames, on the server and on the reference."""
        rng = np.random.default_rng(6)
        server_h = server_c = np.zeros((2, 1, 64), dtype=np.float32)
        ref_h = ref_c = server_h
        for frame in range(3):
            samples = (rng.standard_normal((1, VAD_FRAME)) * 0.3).astype(np.float32)
            response = self.server.infer(VAD, self.vad_inputs(samples, server_h, server_c))
            self.assertStatus(response, 200, f"frame {frame}")
            server_outputs = {o["name"]: harness.output_array(o) for o in response.json()["outputs"]}
            reference = harness.run_reference(model_path(VAD), self.vad_inputs(samples, ref_h, ref_c))
            for name in ("output", "hn", "cn"):
                message = harness.compare_arrays(name, server_outputs[name], reference[name][1])
                self.assertEqual(message, "", f"frame {frame}: {message}")
            server_h, server_c = server_outputs["hn"], server_outputs["cn"]
            ref_h, ref_c = reference["hn"][1], reference["cn"][1]
        self.assertFalse(np.all(server_h == 0), "state hn stayed all zeros after three frames")

    def test_vad_selected_output(self):
        rng = np.random.default_rng(7)
        samples = (rng.standard_normal((1, VAD_FRAME)) * 0.1).astype(np.float32)
        zeros = np.zeros((2, 1, 64), dtype=np.float32)
        response = self.server.infer(VAD, self.vad_inputs(samples, zeros, zeros), outputs=["hn"])
        self.assertStatus(response, 200, "infer with outputs [hn]")
        names = [o["name"] for o in response.json()["outputs"]]
        self.assertEqual(names, ["hn"], "outputs returned when only hn was requested")

    def test_metadata_lists_inputs(self):
        expected = {
            CLASSIFIER: {"x": ("FP32", [-1, 3, -1, -1])},
            DETECTOR: {"x": ("FP32", [-1, 3, -1, -1])},
            RECOGNIZER: {"x": ("FP32", [-1, 3, 48, -1])},
            VAD: {"input": ("FP32", [-1, -1]), "sr": ("INT64", []),
                  "h": ("FP32", [2, -1, 64]), "c": ("FP32", [2, -1, 64])},
        }
        for model, inputs in expected.items():
            metadata = self.metadata(model)
            self.assertEqual(metadata.get("name"), model, f"{model} metadata name")
            actual = {entry["name"]: (entry["datatype"], entry["shape"])
                      for entry in metadata["inputs"]}
            self.assertEqual(actual, inputs, f"{model} metadata inputs")


if __name__ == "__main__":
    unittest.main(verbosity=2)
