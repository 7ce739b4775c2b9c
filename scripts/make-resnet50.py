#!/usr/bin/python3
"""Generate a ResNet-50 v1 ONNX model with random weights, for benchmarks.

Usage: make-resnet50.py OUTPUT.onnx [--seed N]

The architecture is the standard ResNet-50 v1 for 224x224 images. A stem of a 7x7 stride-2
convolution, batch normalization, ReLU and a 3x3 stride-2 max pool feeds four stages of 3, 4, 6
and 3 bottleneck blocks. Each block runs 1x1, 3x3 and 1x1 convolutions of width 64, 128, 256 or
512 with an output four times the width. The first block of stages 2 to 4 downsamples with
stride 2 on its first 1x1 convolution and on its projection shortcut (v1, where v1.5 puts the
stride on the 3x3). Global average pooling and a fully connected layer give 1000 logits. The input "input" is FP32 [batch, 3, 224, 224] and the
output "logits" is FP32 [batch, 1000], with a dynamic batch dimension.

Weights come from numpy's generator seeded with --seed (default 50), so the same seed writes
the same file. Convolutions use He-normal weights. The last batch normalization of each residual
branch scales by 0.2, which keeps activations finite through the 16 blocks of random weights.
Nothing is downloaded. Requires Debian's python3-onnx and python3-numpy (/usr/bin/python3).
"""
import argparse
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IMAGE_SIZE = 224
CLASSES = 1000
# (bottleneck width, blocks, stride of the first block) for each stage.
STAGES = [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]
EXPANSION = 4
BN_EPSILON = 1e-5
RESIDUAL_BN_SCALE = 0.2


class GraphBuilder:
    """Collects the graph's nodes and initializers, drawing weights from one seeded generator."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.nodes = []
        self.initializers = []

    def constant(self, name, array):
        self.initializers.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    def conv(self, name, x, in_channels, out_channels, kernel, stride):
        fan_in = in_channels * kernel * kernel
        weight = self.rng.standard_normal((out_channels, in_channels, kernel, kernel))
        weight *= np.sqrt(2.0 / fan_in)
        self.constant(name + ".weight", weight)
        pad = kernel // 2
        self.nodes.append(helper.make_node(
            "Conv", [x, name + ".weight"], [name], name=name,
            kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[pad] * 4))
        return name

    def batch_norm(self, name, x, channels, scale=1.0):
        gamma = scale * (1.0 + 0.1 * self.rng.standard_normal(channels))
        beta = 0.1 * self.rng.standard_normal(channels)
        mean = 0.1 * self.rng.standard_normal(channels)
        var = self.rng.uniform(0.5, 1.5, channels)
        inputs = [x]
        for suffix, value in (("scale", gamma), ("bias", beta), ("mean", mean), ("var", var)):
            inputs.append(self.constant(f"{name}.{suffix}", value))
        self.nodes.append(helper.make_node(
            "BatchNormalization", inputs, [name], name=name, epsilon=BN_EPSILON))
        return name

    def relu(self, name, x):
        self.nodes.append(helper.make_node("Relu", [x], [name], name=name))
        return name

    def conv_bn(self, name, x, in_channels, out_channels, kernel, stride, relu=True,
                bn_scale=1.0):
        y = self.conv(name + ".conv", x, in_channels, out_channels, kernel, stride)
        y = self.batch_norm(name + ".bn", y, out_channels, bn_scale)
        return self.relu(name + ".relu", y) if relu else y

    def bottleneck(self, name, x, in_channels, width, stride):
        out_channels = width * EXPANSION
        y = self.conv_bn(name + ".a", x, in_channels, width, 1, stride)
        y = self.conv_bn(name + ".b", y, width, width, 3, 1)
        y = self.conv_bn(name + ".c", y, width, out_channels, 1, 1, relu=False,
                         bn_scale=RESIDUAL_BN_SCALE)
        shortcut = x
        if stride != 1 or in_channels != out_channels:
            shortcut = self.conv_bn(name + ".shortcut", x, in_channels, out_channels, 1, stride,
                                    relu=False)
        self.nodes.append(helper.make_node("Add", [y, shortcut], [name + ".add"],
                                           name=name + ".add"))
        return self.relu(name + ".out", name + ".add"), out_channels


def build_model(seed):
    builder = GraphBuilder(seed)
    x = builder.conv_bn("stem", "input", 3, 64, 7, 2)
    builder.nodes.append(helper.make_node(
        "MaxPool", [x], ["stem.pool"], name="stem.pool",
        kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))
    x, channels = "stem.pool", 64

    for stage_index, (width, blocks, stride) in enumerate(STAGES, start=1):
        for block in range(blocks):
            x, channels = builder.bottleneck(f"stage{stage_index}.block{block}", x, channels,
                                             width, stride if block == 0 else 1)

    builder.nodes.append(helper.make_node("GlobalAveragePool", [x], ["pool"], name="pool"))
    builder.nodes.append(helper.make_node("Flatten", ["pool"], ["features"], name="flatten",
                                          axis=1))
    fc_weight = builder.rng.standard_normal((CLASSES, channels)) * np.sqrt(1.0 / channels)
    builder.constant("fc.weight", fc_weight)
    builder.constant("fc.bias", np.zeros(CLASSES))
    builder.nodes.append(helper.make_node(
        "Gemm", ["features", "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1))

    graph = helper.make_graph(
        builder.nodes, "resnet50_v1",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                       ["batch", 3, IMAGE_SIZE, IMAGE_SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES])],
        initializer=builder.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.producer_name = "onnxserve-make-resnet50"
    model.producer_version = "1"
    helper.set_model_props(model, {"weights": f"random, numpy seed {seed}"})
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="path of the .onnx file to write")
    parser.add_argument("--seed", type=int, default=50, help="seed of the random weights")
    args = parser.parse_args()

    model = build_model(args.seed)
    onnx.checker.check_model(model)
    # Written under a temporary name first, so an interrupted run leaves no partial model.
    partial = args.output + ".partial"
    onnx.save(model, partial)
    os.replace(partial, args.output)
    parameters = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    print(f"wrote {args.output}: ResNet-50 v1, {len(model.graph.node)} nodes, "
          f"{parameters} parameters, opset {OPSET}, seed {args.seed}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
