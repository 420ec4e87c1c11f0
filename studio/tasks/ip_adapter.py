"""The `ip_adapter` extra control: an image prompt (IP-Adapter, official `.safetensors` layout) added to
any task with `--ip-adapter ADAPTER --image-prompt IMG[:SCALE] [--image-prompt-mask M]`, or in full with
`--control ip_adapter:file=ADAPTER,image=IMG[,scale=S][,mask=M][,start=A][,end=B]`.

The adapter file is judged by its bytes before a tensor is read (pickle refused, header and length
checked), then loaded without diffusers' processor swap, so the image prompt composes with the task's own
method. The image is encoded by the model's own `image_encoder/`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from attention_processors.ip_adapter_settings import IP_ADAPTER
from studio.declarations import ControlDeclaration, ImagePath, MaskPath, Options, Shortcut, WeightPath, setting
from studio.errors import InputError
from studio.job_spec import MAX_PATH


class AdapterFileError(InputError):
    """An IP-Adapter weight file the studio cannot use (missing, not safetensors, truncated, wrong layout)."""


class IPAdapterOptions(Options):
    file: Annotated[str, WeightPath(label="IP-Adapter")] = Field(
        min_length=1, max_length=MAX_PATH, description="IP-Adapter weights (.safetensors, official key layout)."
    )
    image: Annotated[str, ImagePath()] = Field(min_length=1, max_length=MAX_PATH, description="The image prompt.")
    scale: float = setting(IP_ADAPTER, "scale")
    mask: Annotated[str | None, MaskPath(label="image-prompt mask")] = Field(
        None, max_length=MAX_PATH, description="Region of the output the image prompt acts on (default: all)."
    )
    start: float = setting(IP_ADAPTER, "start")
    end: float = setting(IP_ADAPTER, "end")


def check_adapter_file(path: Path) -> None:
    """Refuse a pickle, a non-safetensors file or a truncated one before any tensor is read."""
    from studio.checkpoints import safetensors_byte_length
    from studio.errors import PickleCheckpointError, StudioError

    if not path.is_file():
        raise AdapterFileError(f"IP-Adapter file not found: {path}")
    try:
        expected = safetensors_byte_length(path)  # refuses pickle with the conversion command
    except PickleCheckpointError:
        raise
    except StudioError as exc:
        raise AdapterFileError(f"IP-Adapter {exc}") from None
    size = path.stat().st_size
    if size < expected:
        raise AdapterFileError(f"IP-Adapter {path.name} is truncated: {size} bytes of {expected}")


def build(options: IPAdapterOptions, job: Any, backbone: Any) -> list[Any]:
    from attention_processors.selection import StepWindow
    from pipelines.ip_adapter import ImagePrompt, image_prompt_control
    from pipelines.ip_adapter_images import image_encoder_of
    from pipelines.ip_adapter_weights import load_adapter
    from studio.images import open_image
    from studio.masks import load_mask

    if options.start > options.end:
        raise InputError(f"ip_adapter: start {options.start} is after end {options.end}")
    path = Path(options.file).expanduser()
    check_adapter_file(path)
    try:
        adapter = load_adapter(path)
    except ValueError as exc:
        raise AdapterFileError(str(exc).splitlines()[0]) from None
    if adapter.is_face:
        raise AdapterFileError(
            f"IP-Adapter {path.name} is a FaceID adapter: give a face prompt (--face-adapter, --face)"
        )
    try:
        image_encoder_of(backbone.pipe)
    except ValueError as exc:
        raise InputError(f"ip_adapter: {exc}") from None
    image = open_image(options.image)
    mask = load_mask(options.mask, name="image-prompt mask") if options.mask else None
    try:
        prompt = ImagePrompt(image, adapter, options.scale, mask)
        return [image_prompt_control(backbone, [prompt], StepWindow(options.start, options.end))]
    except ValueError as exc:
        raise AdapterFileError(str(exc).splitlines()[0]) from None


CONTROL = ControlDeclaration(
    kind="ip_adapter",
    summary="An image prompt through an IP-Adapter (decoupled cross-attention).",
    options=IPAdapterOptions,
    build=build,
    shortcut=Shortcut(
        primary="image",
        flags={"file": "--ip-adapter", "image": "--image-prompt", "mask": "--image-prompt-mask"},
        suffix="scale",
        help={
            "file": "IP-Adapter weights (.safetensors, official layout): once for every --image-prompt, or once each.",
            "image": "An image prompt, IMG or IMG:SCALE (repeatable: one IP-Adapter branch each).",
            "mask": "Region of the output an image prompt acts on: once for all, or once per --image-prompt.",
        },
    ),
)
