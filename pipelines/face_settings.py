"""FaceID's settings with their defaults, stated once and free of torch (the studio's CLI reads them at
start-up; see `attention_processors/settings.py` for why settings live apart from the code that uses them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from annotated_types import Interval, doc


@dataclass(frozen=True)
class FaceIDSettings:
    """The face prompt's strength and step range, and the face detector's input size and threshold."""

    # The official FaceID demos (tencent-ailab/IP-Adapter, `IPAdapterFaceID.generate`) use scale 1.0: the face
    # tokens are the only identity signal, and the FaceID LoRA was trained with them at full strength.
    scale: Annotated[float, Interval(ge=0.0, le=5.0), doc("Strength of the face prompt (0: none).")] = 1.0
    start: Annotated[float, Interval(ge=0.0, le=1.0), doc("First step with the face prompt (fraction).")] = 0.0
    end: Annotated[float, Interval(ge=0.0, le=1.0), doc("Step where the face prompt stops (fraction).")] = 1.0
    # insightface's FaceID recipe prepares the detector at 640 x 640 (the size SCRFD was trained at); a
    # detector with a fixed input size keeps its own.
    det_size: Annotated[int, Interval(ge=64, le=2048), doc("Face detector input size (pixels, square).")] = 640
    # insightface's default: SCRFD's scores are calibrated so that 0.5 separates faces from background.
    det_thresh: Annotated[float, Interval(gt=0.0, lt=1.0), doc("Face detection score threshold.")] = 0.5


FACE_ID = FaceIDSettings()
# FaceID-Plus encodes the face aligned at 224 x 224 (CLIP's input size) with insightface's `norm_crop`.
ALIGNED_SIZE = 224
