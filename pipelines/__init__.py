"""Thin task pipelines over diffusers components: generate, img2img, invert, reconstruct.

Every pipeline takes a `Backbone` (SD1.x/2.x or SDXL), draws all noise from the `torch.Generator`s it is
given, runs the UNet through the studio's attention processors with the caller's controls, reports a
`StepEvent` after each step and honours a `CancelToken` at step boundaries. All of them run the one step
loop (`pipelines/_denoise.py`); a method that acts on the latents between steps passes step-end hooks
(`StepEnd`, `StepEndHook`, as diffusers' `callback_on_step_end`) instead of forking it. Samplers are chosen
by name (`pipelines.samplers`), prompts may use A1111's syntax (`pipelines.prompt_syntax`), and
`pipelines.seeds` numbers a batch's seeds as A1111 does.
"""

from pipelines.backbone import Backbone, PromptEmbeds, UNetConditioning
from pipelines.events import Cancelled, CancelToken, StepCallback, StepEvent
from pipelines.generate import generate
from pipelines.hooks import StepEnd, StepEndHook
from pipelines.img2img import img2img
from pipelines.invert import invert
from pipelines.outputs import GenerationOutput, Inversion
from pipelines.prompt_syntax import extract_loras, parse_prompt
from pipelines.reconstruct import reconstruct
from pipelines.samplers import DEFAULT_SAMPLER, SAMPLERS, resolve_sampler
from pipelines.seeds import batch_seeds, seeded_generators
from pipelines.teacher import TeacherForcing

__all__ = [
    "DEFAULT_SAMPLER",
    "SAMPLERS",
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
    "batch_seeds",
    "extract_loras",
    "generate",
    "img2img",
    "invert",
    "parse_prompt",
    "reconstruct",
    "resolve_sampler",
    "seeded_generators",
]
