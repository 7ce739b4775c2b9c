#!/usr/bin/python3
"""Render a line of text and print a POST /predict body for the PaddleOCR text-direction
classifier (the model ocr_cls in the default repository).

Usage: text_image_request.py TEXT [--rotate-180]

The image is drawn with ImageMagick (/usr/bin/convert) in black DejaVu Sans on white. It is
then prepared as PaddleOCR prepares classifier input: height 48 with the aspect ratio kept,
width at most 192, values (x/255 - 0.5)/0.5, channels first, zero padding on the right up to
width 192.
The classifier's two outputs are the scores for "upright" and "rotated 180 degrees".
"""
import json
import math
import subprocess
import sys

import numpy as np

HEIGHT = 48
WIDTH = 192
CONVERT = "/usr/bin/convert"


def render(text):
    """Return the text as an RGB uint8 array [48, width, 3]."""
    size = subprocess.run([CONVERT, "-font", "DejaVu-Sans", "-pointsize", "48", f"label:{text}",
                           "-format", "%w %h", "info:"],
                          check=True, capture_output=True, text=True).stdout.split()
    width = min(WIDTH, math.ceil(HEIGHT * int(size[0]) / int(size[1])))
    pixels = subprocess.run([CONVERT, "-font", "DejaVu-Sans", "-pointsize", "48", f"label:{text}",
                             "-resize", f"{width}x{HEIGHT}!", "-depth", "8", "rgb:-"],
                            check=True, capture_output=True).stdout
    return np.frombuffer(pixels, dtype=np.uint8).reshape(HEIGHT, width, 3)


def main():
    args = [a for a in sys.argv[1:] if a != "--rotate-180"]
    if len(args) != 1:
        sys.exit(__doc__)
    image = render(args[0])
    if "--rotate-180" in sys.argv[1:]:
        image = image[::-1, ::-1, :]

    tensor = np.zeros((1, 3, HEIGHT, WIDTH), dtype=np.float32)
    tensor[0, :, :, :image.shape[1]] = ((image / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)
    data = [float(f"{v:.4g}") for v in tensor.ravel()]
    json.dump({"data": data, "shape": list(tensor.shape)}, sys.stdout, separators=(",", ":"))
    print()


if __name__ == "__main__":
    main()
