#!/usr/bin/python3
"""The PaddleOCR text-direction classifier, served by onnxserve, distinguishes a rendered text
image from the same image rotated 180 degrees, through the KServe v2 API and through /predict."""
import math
import os
import subprocess
import sys
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

MODEL = "ch_ppocr_mobile_v2.0_cls_infer"
OUTPUT = "softmax_0.tmp_0"
CONVERT = "/usr/bin/convert"  # /usr/local/bin/convert may be a stand-in on these machines

# PaddleOCR's classifier input: height 48, width padded to 192, 3 channels.
HEIGHT = 48
WIDTH = 192

# (text, canvas width, canvas height, point size, baseline x, baseline y)
IMAGES = [
    ("Hello World", 256, 64, 36, 8, 46),
    ("onnxserve 42", 300, 80, 44, 10, 58),
]


def render_text(text, width, height, pointsize, x, y):
    """Render black text on white and resize it as PaddleOCR does: height 48, aspect ratio kept,
    width at most 192. Returns a uint8 array [48, resized width, 3] (RGB)."""
    resized_width = min(WIDTH, int(math.ceil(HEIGHT * width / height)))
    command = [CONVERT, "-size", f"{width}x{height}", "xc:white", "-font", "DejaVu-Sans",
               "-pointsize", str(pointsize), "-fill", "black", "-annotate", f"+{x}+{y}", text,
               "-resize", f"{resized_width}x{HEIGHT}!", "-depth", "8", "rgb:-"]
    result = subprocess.run(command, capture_output=True, timeout=60)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed: {result.stderr.decode()}")
    expected = HEIGHT * resized_width * 3
    if len(result.stdout) != expected:
        raise AssertionError(f"convert wrote {len(result.stdout)} bytes, expected {expected}")
    return np.frombuffer(result.stdout, dtype=np.uint8).reshape(HEIGHT, resized_width, 3)


def preprocess(image):
    """PaddleOCR classifier preprocessing: (x/255 - 0.5)/0.5, channels first, zero padding on the
    right up to width 192. Returns FP32 [1, 3, 48, 192]."""
    normalized = (image.astype(np.float32) / 255.0 - 0.5) / 0.5
    chw = normalized.transpose(2, 0, 1)
    padded = np.zeros((3, HEIGHT, WIDTH), dtype=np.float32)
    padded[:, :, :chw.shape[2]] = chw
    return padded[np.newaxis]


def rotate_180(image):
    return np.ascontiguousarray(image[::-1, ::-1, :])


class ClassifierRotationTest(harness.ServerTestCase):
    def setUp(self):
        model = os.path.join(harness.models_dir(), MODEL + ".onnx")
        self.server = self.start_server([model])

    def classify(self, batch):
        response = self.server.infer(MODEL, [("x", "FP32", batch)])
        self.assertStatus(response, 200, "classifier infer")
        outputs = {o["name"]: o for o in response.json()["outputs"]}
        self.assertIn(OUTPUT, outputs, "classifier response outputs")
        scores = harness.output_array(outputs[OUTPUT])
        self.assertEqual(list(scores.shape), [batch.shape[0], 2], "classifier output shape")
        return scores

    def test_upright_and_rotated(self):
        for text, *geometry in IMAGES:
            image = render_text(text, *geometry)
            for label, picture, expected in ((f"{text!r} upright", image, 0),
                                             (f"{text!r} rotated 180", rotate_180(image), 1)):
                scores = self.classify(preprocess(picture))
                self.assertEqual(int(np.argmax(scores[0])), expected,
                                 f"{label}: scores {scores[0].tolist()}, expected class {expected}")

    def test_batch_of_upright_and_rotated(self):
        image = render_text(*IMAGES[0])
        batch = np.concatenate([preprocess(image), preprocess(rotate_180(image))])
        scores = self.classify(batch)
        self.assertEqual([int(i) for i in np.argmax(scores, axis=1)], [0, 1],
                         f"batch scores {scores.tolist()}")

    def predict(self, path, document):
        response = self.server.post_json(path, document)
        self.assertStatus(response, 200, f"POST {path}")
        body = response.json()
        for key in ("output", "shape", "model", "request_id"):
            self.assertIn(key, body, f"POST {path} response {str(body)[:300]}")
        self.assertEqual(body["model"], MODEL, f"POST {path} model")
        self.assertEqual(body["shape"], [1, 2], f"POST {path} shape")
        output = np.array(list(harness.flatten(body["output"])), dtype=np.float32)
        self.assertEqual(output.size, 2, f"POST {path} output {body['output']}")
        return output

    def test_predict_nested_data(self):
        image = render_text(*IMAGES[0])
        for picture, expected in ((image, 0), (rotate_180(image), 1)):
            x = preprocess(picture)
            output = self.predict("/predict", {"data": x.tolist()})
            self.assertEqual(int(np.argmax(output)), expected, f"/predict output {output.tolist()}")
            reference = self.classify(x)[0]
            self.assertEqual(output.tolist(), reference.tolist(), "/predict output vs v2 infer output")

    def test_predict_flat_data_with_shape(self):
        image = render_text(*IMAGES[1])
        for picture, expected in ((image, 0), (rotate_180(image), 1)):
            x = preprocess(picture)
            document = {"data": [float(v) for v in x.reshape(-1)], "shape": list(x.shape)}
            output = self.predict(f"/models/{MODEL}/predict", document)
            self.assertEqual(int(np.argmax(output)), expected,
                             f"/models/{MODEL}/predict output {output.tolist()}")

    def test_predict_flat_data_without_shape(self):
        """The classifier's dims [-1,3,-1,-1] leave more than the leading dim unknown."""
        x = preprocess(render_text(*IMAGES[0]))
        response = self.server.post_json("/predict", {"data": [float(v) for v in x.reshape(-1)]})
        self.assertErrorMentions(response, 400, ["shape"], "flat /predict data without shape")

    def test_predict_unknown_model(self):
        response = self.server.post_json("/models/no_such_model/predict", {"data": [[1.0]]})
        self.assertErrorMentions(response, 404, ["no_such_model"], "/predict on unknown model")


if __name__ == "__main__":
    unittest.main(verbosity=2)
