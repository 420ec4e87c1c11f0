"""The `face_id` extra control: a face prompt (IP-Adapter-FaceID, FaceID-Plus or PlusV2, official
`.safetensors` layout) added to any task with `--face-adapter ADAPTER --face IMG[:SCALE] [--face-models DIR]`,
or in full with `--control face_id:file=ADAPTER,image=IMG[,scale=S][,models=DIR][,mask=M][,plus_v2=true]`.

The face is found, aligned and embedded by insightface with the user's face models: a folder of ONNX files
such as insightface's `buffalo_l` (`--face-models`, or the DIFFUSION_STUDIO_FACE_MODELS environment variable).
The studio never downloads them: insightface's models are licensed for non-commercial research only. The
adapter file is judged by its bytes before a tensor is read, and its LoRA is active only while the job runs.
A folder given in the job (`--face-models`) is hashed with its inputs, so `studio run` refuses other face
models; the environment variable is the machine's setting, like a model cache, and is not recorded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from pipelines.face_settings import FACE_ID
from studio.declarations import (
    ControlDeclaration,
    ImagePath,
    MaskPath,
    ModelFolder,
    Options,
    Shortcut,
    WeightPath,
    setting,
)
from studio.errors import InputError
from studio.job_spec import MAX_PATH

FACE_MODELS_ENV = "DIFFUSION_STUDIO_FACE_MODELS"


class FaceIDOptions(Options):
    file: Annotated[str, WeightPath(label="FaceID adapter")] = Field(
        min_length=1,
        max_length=MAX_PATH,
        description="IP-Adapter-FaceID weights (.safetensors, official key layout: FaceID, FaceID-Plus or PlusV2).",
    )
    image: Annotated[str, ImagePath()] = Field(
        min_length=1, max_length=MAX_PATH, description="An image with one face (the identity to keep)."
    )
    scale: float = setting(FACE_ID, "scale")
    models: Annotated[str | None, ModelFolder(label="face model")] = Field(
        None,
        min_length=1,
        max_length=MAX_PATH,
        description=f"Folder of insightface ONNX face models, e.g. buffalo_l (default: ${FACE_MODELS_ENV}).",
    )
    mask: Annotated[str | None, MaskPath(label="face-prompt mask")] = Field(
        None, max_length=MAX_PATH, description="Region of the output the face prompt acts on (default: all)."
    )
    plus_v2: bool | None = Field(
        None, description="FaceID-Plus files: add the ID tokens back (PlusV2). Default: from the file name."
    )
    start: float = setting(FACE_ID, "start")
    end: float = setting(FACE_ID, "end")


def face_models_folder(options: FaceIDOptions) -> str:
    folder = options.models or os.environ.get(FACE_MODELS_ENV, "").strip()
    if not folder:
        raise InputError(
            f"face_id: no face models: give --face-models DIR or set {FACE_MODELS_ENV} to a folder of insightface "
            "ONNX models such as buffalo_l (download them yourself; they are licensed for non-commercial use only)"
        )
    return folder


def build(options: FaceIDOptions, job: Any, backbone: Any) -> list[Any]:
    from attention_processors.selection import StepWindow
    from pipelines.faces import load_face_models
    from pipelines.ip_adapter import image_prompt_control
    from pipelines.ip_adapter_faceid import FacePrompt
    from pipelines.ip_adapter_weights import load_adapter
    from studio.images import open_image
    from studio.masks import load_mask
    from studio.tasks.ip_adapter import AdapterFileError, check_adapter_file

    if options.start > options.end:
        raise InputError(f"face_id: start {options.start} is after end {options.end}")
    folder = face_models_folder(options)
    path = Path(options.file).expanduser()
    check_adapter_file(path)
    image = open_image(options.image)
    mask = load_mask(options.mask, name="face-prompt mask") if options.mask else None
    try:
        adapter = load_adapter(path)
    except ValueError as exc:
        raise AdapterFileError(str(exc).splitlines()[0]) from None
    if not adapter.is_face:
        raise AdapterFileError(
            f"face_id: {path.name} is not a FaceID adapter (give an image prompt with --ip-adapter)"
        )
    try:
        faces = load_face_models(folder)
        prompt = FacePrompt(
            image, adapter, faces, options.scale, mask, shortcut=options.plus_v2, name=Path(options.image).name
        )
        return [image_prompt_control(backbone, [prompt], StepWindow(options.start, options.end))]
    except ValueError as exc:
        raise InputError(f"face_id: {str(exc).splitlines()[0]}") from None


CONTROL = ControlDeclaration(
    kind="face_id",
    summary="A face prompt through an IP-Adapter-FaceID (insightface face embedding; FaceID-Plus/PlusV2 too).",
    options=FaceIDOptions,
    build=build,
    shortcut=Shortcut(
        primary="image",
        flags={"file": "--face-adapter", "image": "--face", "models": "--face-models", "mask": "--face-mask"},
        suffix="scale",
        help={
            "file": "IP-Adapter-FaceID weights (.safetensors, official layout): once for every --face, or once each.",
            "image": "A face prompt, IMG or IMG:SCALE: an image with one face (repeatable).",
            "models": f"Folder of insightface ONNX face models, e.g. buffalo_l (default: ${FACE_MODELS_ENV}).",
            "mask": "Region of the output a face prompt acts on: once for all, or once per --face.",
        },
    ),
)
