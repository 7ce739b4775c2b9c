#!/usr/bin/python3
"""Generate the small ONNX models the tests use, with Debian's python3-onnx.

Usage: make_models.py OUTDIR. Writes OUTDIR/NAME.onnx for each model and OUTDIR/repo, a model
repository (NAME/1/model.onnx) holding every generated model plus one that fails to load.
"""
import os
import shutil
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13

# Element types covered by the identity model, with the input name suffix.
IDENTITY_TYPES = [
    ("bool", TensorProto.BOOL),
    ("uint8", TensorProto.UINT8),
    ("uint16", TensorProto.UINT16),
    ("uint32", TensorProto.UINT32),
    ("uint64", TensorProto.UINT64),
    ("int8", TensorProto.INT8),
    ("int16", TensorProto.INT16),
    ("int32", TensorProto.INT32),
    ("int64", TensorProto.INT64),
    ("fp32", TensorProto.FLOAT),
    ("fp64", TensorProto.DOUBLE),
    ("fp16", TensorProto.FLOAT16),
    ("bf16", TensorProto.BFLOAT16),
]


def save(model, outdir, name):
    model.producer_name = "onnxserve-tests"
    model.producer_version = "1"
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(outdir, name + ".onnx"))


def make_identity(outdir):
    """identity: one input x_T [-1, -1] and output y_T per element type."""
    nodes, inputs, outputs = [], [], []
    for suffix, elem in IDENTITY_TYPES:
        inputs.append(helper.make_tensor_value_info("x_" + suffix, elem, ["batch", "n"]))
        outputs.append(helper.make_tensor_value_info("y_" + suffix, elem, ["batch", "n"]))
        nodes.append(helper.make_node("Identity", ["x_" + suffix], ["y_" + suffix]))
    graph = helper.make_graph(nodes, "identity", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    helper.set_model_props(model, {"purpose": "datatype round trips"})
    save(model, outdir, "identity")


def make_scale(outdir):
    """scale: y = 2 * x + 1 on x [-1, 4] float, the /predict model with a static trailing dim."""
    two = numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two")
    one = numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one")
    nodes = [
        helper.make_node("Mul", ["x", "two"], ["t"]),
        helper.make_node("Add", ["t", "one"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "scale",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        initializer=[two, one])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]), outdir, "scale")


def make_slow(outdir):
    """slow: runs n rounds of Sin over x, so a test controls how long one inference takes.

    Inputs x [-1] float and n [1] int64; output y has x's shape. A round over 1M floats takes a
    few milliseconds on one core (an estimate: it depends on the machine).
    """
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Sin", ["v_in"], ["v_out"])],
        "slow_body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, ["n_x"])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, ["n_x"])])
    scalar_shape = numpy_helper.from_array(np.array([], dtype=np.int64), "scalar_shape")
    true_value = numpy_helper.from_array(np.array(True), "true_value")
    nodes = [
        helper.make_node("Reshape", ["n", "scalar_shape"], ["trip_count"]),
        helper.make_node("Loop", ["trip_count", "true_value", "x"], ["y"], body=body),
    ]
    graph = helper.make_graph(
        nodes, "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n_x"]),
         helper.make_tensor_value_info("n", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n_x"])],
        initializer=[scalar_shape, true_value])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]), outdir, "slow")


def make_slow_batched(outdir):
    """slow_batched: slow with a batch dim, for dynamic batching.

    Inputs x [-1, -1] float and n [-1] int64; output y has x's shape. Every row runs max(n)
    rounds of Sin, so rows batched together get what each gets alone when they send the same n.
    """
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Sin", ["v_in"], ["v_out"])],
        "slow_batched_body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, ["batch", "n_x"])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, ["batch", "n_x"])])
    true_value = numpy_helper.from_array(np.array(True), "true_value")
    nodes = [
        helper.make_node("ReduceMax", ["n"], ["trip_count"], keepdims=0),
        helper.make_node("Loop", ["trip_count", "true_value", "x"], ["y"], body=body),
    ]
    graph = helper.make_graph(
        nodes, "slow_batched",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "n_x"]),
         helper.make_tensor_value_info("n", TensorProto.INT64, ["batch"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "n_x"])],
        initializer=[true_value])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]), outdir,
         "slow_batched")


def make_strings(outdir):
    """strings: text_out = text on text [-1] string, the BYTES model with one input."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["text"], ["text_out"])], "strings",
        [helper.make_tensor_value_info("text", TensorProto.STRING, ["n"])],
        [helper.make_tensor_value_info("text_out", TensorProto.STRING, ["n"])])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]), outdir,
         "strings")


def make_matrix(outdir):
    """matrix: y = x on x [-1, -1] float, one input whose second dim only a request can give."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "matrix",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "k"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "k"])])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]), outdir,
         "matrix")


def make_scalar(outdir):
    """scalar: y = 2 * x on a rank-0 float x."""
    two = numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two")
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["y"])], "scalar",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
        initializer=[two])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]), outdir,
         "scalar")


def link_or_copy(source, target):
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def make_repository(outdir, names):
    repo = os.path.join(outdir, "repo")
    for name in names:
        folder = os.path.join(repo, name, "1")
        os.makedirs(folder, exist_ok=True)
        target = os.path.join(folder, "model.onnx")
        if os.path.lexists(target):
            os.remove(target)
        # A hard link or a copy: a symbolic link would leave the repository, which is refused.
        link_or_copy(os.path.join(outdir, name + ".onnx"), target)
    broken = os.path.join(repo, "broken", "1")
    os.makedirs(broken, exist_ok=True)
    with open(os.path.join(broken, "model.onnx"), "wb") as f:
        f.write(b"this is not an ONNX model\n")


def main():
    outdir = os.path.abspath(sys.argv[1])
    os.makedirs(outdir, exist_ok=True)
    make_identity(outdir)
    make_scale(outdir)
    make_slow(outdir)
    make_slow_batched(outdir)
    make_strings(outdir)
    make_matrix(outdir)
    make_scalar(outdir)
    make_repository(outdir, ["identity", "scale", "slow"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
