#!/usr/bin/python3
"""Generate the tiny benchmark model, y = x + c, which exposes per-request overhead.

Usage: make-tiny-model.py OUTDIR [--name NAME]

The input "x" is FP32 [N, 4] with a dynamic batch dimension N, c is a constant initializer of
four floats (1, 2, 3, 4), and the output "y" is FP32 [N, 4]. The script writes
OUTDIR/NAME.onnx for servers that take one model file and OUTDIR/repository/NAME/1/model.onnx
(a hard link to the same file, or a copy across file systems) for onnxserve's
--model-repository. NAME defaults to "tiny". Nothing is downloaded. Requires Debian's
python3-onnx and python3-numpy (/usr/bin/python3).
"""
import argparse
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13
WIDTH = 4


def build_model(name):
    """Return the ONNX model y = x + c with c = [1, 2, 3, 4]."""
    constant = numpy_helper.from_array(np.arange(1, WIDTH + 1, dtype=np.float32), "c")
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "c"], ["y"], name="add")],
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", WIDTH])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", WIDTH])],
        initializer=[constant],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.producer_name = "onnxserve-bench"
    model.producer_version = "1"
    onnx.checker.check_model(model)
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", help="folder to write NAME.onnx and repository/ into")
    parser.add_argument("--name", default="tiny", help="model name and file stem (default: tiny)")
    args = parser.parse_args()

    os.makedirs(args.outdir, exist_ok=True)
    path = os.path.join(args.outdir, args.name + ".onnx")
    onnx.save(build_model(args.name), path)

    version_dir = os.path.join(args.outdir, "repository", args.name, "1")
    os.makedirs(version_dir, exist_ok=True)
    target = os.path.join(version_dir, "model.onnx")
    if os.path.lexists(target):
        os.remove(target)
    # Not a symbolic link: onnxserve rejects links that leave the repository.
    try:
        os.link(path, target)
    except OSError:
        with open(path, "rb") as source, open(target, "wb") as copy:
            copy.write(source.read())
    print(f"wrote {path} and {target}")


if __name__ == "__main__":
    main()
