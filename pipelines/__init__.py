"""Thin task pipelines over diffusers components: generate, img2img, invert, reconstruct.

Every pipeline takes a `Backbone` (SD1.x/2.x or SDXL), draws all noise from the `torch.Generator`s it is
given, runs the UNet through the studio's attention processors with the caller's controls, reports a
`StepEvent` after each step and honours a `CancelToken` at step boundaries.
"""

from pipelines.backbone import Backbone, PromptEmbeds, UNetConditioning
from pipelines.events import Cancelled, CancelToken, StepCallback, StepEvent
from pipelines.generate import generate
from pipelines.img2img import img2img
from pipelines.invert import invert
from pipelines.outputs import GenerationOutput, Inversion
from pipelines.reconstruct import reconstruct

__all__ = [
    "Backbone",
    "CancelToken",
    "Cancelled",
    "GenerationOutput",
    "Inversion",
    "PromptEmbeds",
    "StepCallback",
    "StepEvent",
    "UNetConditioning",
    "generate",
    "img2img",
    "invert",
    "reconstruct",
]
