"""A tiny face-model folder for the FaceID tests, built with `onnx.helper`, and pictures with synthetic faces.

insightface's `FaceAnalysis(name=<folder>)` recognises the ONNX files of a folder by their shapes: a graph
with 9 outputs is an SCRFD detector (3 strides x score / box / 5 landmarks, 2 anchors per cell), a graph
with a square input of 112 is an ArcFace recogniser. These two are small and deterministic:

- "A face" is a FACE x FACE square whose red channel is 255 and green 0 (its blue channel carries its
  identity). The detector's score at a stride-8 cell is a steep sigmoid of the mean redness over the
  FACE x FACE window centred on the cell's anchor, so it fires on the one cell whose window a face fills
  (faces centred on multiples of 8), and its box and 5 landmarks are fixed offsets from the anchor: the
  landmarks are ArcFace's template scaled onto the square, so `norm_crop` maps the square onto the crop.
  The strides 16 and 32 score nothing.
- The recogniser pools the 112 x 112 crop to 3 x 14 x 14 and multiplies by a fixed random matrix: a
  512-d embedding (not normalised; insightface's `normed_embedding` divides by its norm).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image

DET_SIZE = 128  # the detector's static input (pictures of this size are not resized by SCRFD)
FACE = 24  # the side of a synthetic face, in pixels
STRIDES = (8, 16, 32)
ANCHORS = 2
# insightface's ArcFace landmark template for a 112 crop (eyes, nose, mouth corners): a public constant of
# the ArcFace alignment (insightface/utils/face_align.py `arcface_dst`).
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)
EMBED = 512
POOL = 8  # the recogniser's pooling: 112 / 8 = 14


def landmarks(center: tuple[float, float]) -> np.ndarray:
    """The 5 landmarks the detector reports for a face centred at `center` (x, y): [5, 2]."""
    return np.asarray(center, np.float32) + (ARCFACE_TEMPLATE - 56.0) * (FACE / 112.0)


def _detector():
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    half = FACE // 2
    # redness R - G (the input is BGR swapped to RGB and normalised by (x - 127.5) / 128: 2 for a face pixel)
    nodes.append(
        helper.make_node("Conv", ["input.1", const("w_red", np.array([1, -1, 0]).reshape(1, 3, 1, 1))], ["rg"])
    )
    nodes.append(helper.make_node("Relu", ["rg"], ["red"]))
    after = FACE - half - 8  # with `half` before: DET_SIZE / 8 windows, each centred on its cell's anchor
    nodes.append(
        helper.make_node(
            "AveragePool", ["red"], ["mean"], kernel_shape=[FACE, FACE], strides=[8, 8],
            pads=[half, half, after, after], count_include_pad=1,
        )
    )  # fmt: skip
    # mean redness is 2 on a window a face fills; sigmoid(30 * (mean / 2 - 0.8)) fires only there
    nodes.append(helper.make_node("Mul", ["mean", const("k", np.array(15.0))], ["scaled"]))
    nodes.append(helper.make_node("Add", ["scaled", const("bias", np.array(-24.0))], ["logit"]))
    nodes.append(helper.make_node("Sigmoid", ["logit"], ["cell"]))
    cells = (DET_SIZE // 8) ** 2
    inits.append(numpy_helper.from_array(np.array([cells, 1], np.int64), "cells_shape"))
    inits.append(numpy_helper.from_array(np.array([cells * ANCHORS, 1], np.int64), "anchors_shape"))
    nodes.append(helper.make_node("Reshape", ["cell", "cells_shape"], ["cell1"]))
    # anchor 0 of a cell takes its score, anchor 1 never fires
    nodes.append(helper.make_node("Concat", ["cell1", const("zeros1", np.zeros((cells, 1)))], ["pair"], axis=1))
    nodes.append(helper.make_node("Reshape", ["pair", "anchors_shape"], ["score8"]))
    kps = landmarks((0.0, 0.0)).reshape(-1)  # offsets from the anchor, in pixels
    outputs = []
    for part, width in (("score", 1), ("bbox", 4), ("kps", 10)):
        for stride in STRIDES:
            n = (DET_SIZE // stride) ** 2 * ANCHORS
            name = f"{part}{stride}"
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [n, width]))
            if name == "score8":
                continue
            # SCRFD multiplies boxes and landmarks by the stride
            value = {
                "score": np.zeros((n, 1)),
                "bbox": np.full((n, 4), half / stride),
                "kps": np.tile(kps / stride, (n, 1)),
            }[part]
            nodes.append(helper.make_node("Identity", [const(f"{name}_value", value)], [name]))
    graph = helper.make_graph(
        nodes,
        "tiny_scrfd",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, DET_SIZE, DET_SIZE])],
        outputs,
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def _recognizer(seed: int):
    from onnx import TensorProto, helper, numpy_helper

    side = 112 // POOL
    weights = np.random.RandomState(seed).randn(3 * side * side, EMBED).astype(np.float32)
    nodes = [
        helper.make_node("AveragePool", ["input.1"], ["pooled"], kernel_shape=[POOL, POOL], strides=[POOL, POOL]),
        helper.make_node("Reshape", ["pooled", "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["embedding"]),
    ]
    inits = [
        numpy_helper.from_array(np.array([1, 3 * side * side], np.int64), "flat_shape"),
        numpy_helper.from_array(weights, "w"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_arcface",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 112, 112])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, EMBED])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def write_face_models(folder: Path, seed: int = 0) -> Path:
    """A folder `FaceAnalysis(name=folder)` loads: det.onnx (SCRFD-shaped) and rec.onnx (ArcFace-shaped)."""
    import onnx

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(_detector(), str(folder / "det.onnx"))
    onnx.save(_recognizer(seed), str(folder / "rec.onnx"))
    return folder


def face_picture(centers: list[tuple[int, int]], identity: int = 0, size: int = DET_SIZE) -> PIL.Image.Image:
    """A grey RGB picture with a synthetic face centred at each (x, y) (multiples of 8); `identity` seeds the
    faces' blue pattern (3 x 3 blocks), so two identities give two embeddings."""
    pixels = np.full((size, size, 3), 127, np.uint8)
    pattern = np.random.RandomState(1000 + identity).randint(0, 256, (3, 3)).astype(np.uint8)
    blue = np.kron(pattern, np.ones((FACE // 3, FACE // 3), np.uint8))  # [FACE, FACE]
    for x, y in centers:
        top, left = y - FACE // 2, x - FACE // 2
        pixels[top : top + FACE, left : left + FACE, 0] = 255
        pixels[top : top + FACE, left : left + FACE, 1] = 0
        pixels[top : top + FACE, left : left + FACE, 2] = blue
    return PIL.Image.fromarray(pixels, "RGB")
