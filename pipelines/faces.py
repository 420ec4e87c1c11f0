"""Faces for FaceID through insightface: detect, align (`norm_crop` at the 5 landmarks), embed (ArcFace).

The models are the user's: a folder of ONNX files (insightface's `buffalo_l` has a SCRFD detector and an
ArcFace recogniser) opened with `FaceAnalysis(name=<folder>)`, which recognises each file by its shapes.
The studio never downloads them (insightface's models are licensed for non-commercial research only), so
a missing folder is an error here, never a download.

insightface works on BGR arrays (OpenCV's order); a PIL image is converted once, here.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
from torch import Tensor

from pipelines.face_settings import ALIGNED_SIZE, FACE_ID

INSTALL_HINT = "pip install 'diffusion-studio[faces]' (insightface and onnxruntime)"


@dataclass(frozen=True)
class Face:
    """The one face of an image: what FaceID and FaceID-Plus read from it."""

    embedding: Tensor  # [512] ArcFace embedding, L2-normalised (insightface's `normed_embedding`)
    aligned: np.ndarray  # [224, 224, 3] uint8 BGR: the face aligned with `norm_crop` (FaceID-Plus's CLIP input)
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in the image's pixels
    score: float  # the detector's


def load_face_models(
    folder: str | os.PathLike[str], det_size: int = FACE_ID.det_size, det_thresh: float = FACE_ID.det_thresh
) -> Any:
    """insightface's `FaceAnalysis` on a folder of ONNX models (a detector and a recogniser), prepared.

    Raises ValueError when insightface is missing, or the folder is absent or lacks either model.
    """
    try:
        from insightface.app import FaceAnalysis
    except ImportError:
        raise ValueError(f"FaceID needs insightface: {INSTALL_HINT}") from None
    path = Path(folder).expanduser()
    if not path.is_dir():  # FaceAnalysis would try to download a name that is not a folder
        raise ValueError(f"face model folder not found: {path} (a folder of insightface ONNX models, e.g. buffalo_l)")
    if not any(path.glob("*.onnx")):
        raise ValueError(f"face model folder {path} has no .onnx files (insightface models, e.g. buffalo_l)")
    try:
        models = FaceAnalysis(name=str(path.resolve()), allowed_modules=["detection", "recognition"])
    except AssertionError:  # FaceAnalysis asserts that a detector was found
        raise ValueError(f"face model folder {path} has no face detector (an SCRFD .onnx)") from None
    if "recognition" not in models.models:
        raise ValueError(f"face model folder {path} has no face recogniser (an ArcFace .onnx with a 112 input)")
    models.prepare(ctx_id=0, det_size=(det_size, det_size), det_thresh=det_thresh)
    return models


def analyse_face(models: Any, image: PIL.Image.Image, name: str = "the face image") -> Face:
    """The one face in `image`; a ValueError says when there is none, or more than one."""
    from insightface.utils import face_align

    bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])  # [H, W, 3] uint8
    with warnings.catch_warnings():  # scikit-image's notice about the similarity fit insightface calls
        warnings.simplefilter("ignore", FutureWarning)
        faces = models.get(bgr)
    if not faces:
        raise ValueError(f"no face found in {name}: FaceID needs an image with one visible face")
    if len(faces) > 1:
        raise ValueError(f"{len(faces)} faces found in {name}: FaceID needs one; crop the image to the face you mean")
    face = faces[0]
    if face.embedding is None or face.kps is None:
        raise ValueError(f"the face models could not embed the face in {name} (the detector gives no landmarks)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        aligned = face_align.norm_crop(bgr, landmark=face.kps, image_size=ALIGNED_SIZE)  # [224, 224, 3] BGR
    embedding = torch.from_numpy(np.asarray(face.normed_embedding, dtype=np.float32)).flatten()  # [512]
    x0, y0, x1, y1 = (float(v) for v in face.bbox)
    return Face(embedding, aligned, (x0, y0, x1, y1), float(face.det_score))
