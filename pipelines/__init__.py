"""Thin task pipelines over diffusers components: generate, img2img, invert, reconstruct.

Every pipeline takes a `Backbone` (SD1.x/2.x or SDXL), draws all noise from the `torch.Generator`s it is
given, runs the UNet through the studio's attention processors with the caller's controls, reports a
`StepEvent` after each step and honours a `CancelToken` at step boundaries. All of them run the one step
loop (`pipelines/_denoise.py`); a method that acts on the latents between steps passes step-end hooks
(`StepEnd`, `StepEndHook`, as diffusers' `callback_on_step_end`) instead of forking it.
"""

from pipelines.backbone import Backbone, PromptEmbeds, UNetConditioning
from pipelines.events import Cancelled, CancelToken, StepCallback, StepEvent
from pipelines.generate import generate
from pipelines.hooks import StepEnd, StepEndHook
from pipelines.img2img import img2img
from pipelines.invert import invert
from pipelines.outputs import GenerationOutput, Inversion
from pipelines.reconstruct import reconstruct
from pipelines.teacher import TeacherForcing

__all__ = [
    "Backbone",
    "CancelToken",
    "Cancelled",
    "GenerationOutput",
    "Inversion",
    "PromptEmbeds",
    "StepCallback",
    "StepEnd",
    "StepEndHook",
    "StepEvent",
    "TeacherForcing",
    "UNetConditioning",
    "generate",
    "img2img",
    "invert",
    "reconstruct",
]
