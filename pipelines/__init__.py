"""Thin task pipelines over diffusers components: generate, img2img, invert, reconstruct, regional, repaint.

Every pipeline takes a `Backbone` (SD1.x/2.x or SDXL), draws all noise from the `torch.Generator`s it is
given, runs the UNet through the studio's attention processors with the caller's controls, reports a
`StepEvent` after each step and honours a `CancelToken` at step boundaries. All of them run the one step
loop (`pipelines/_denoise.py`); a method that acts on the latents between steps passes step-end hooks
(`StepEnd`, `StepEndHook`, as diffusers' `callback_on_step_end`) instead of forking it. Samplers are chosen
by name (`pipelines.samplers`), prompts may use A1111's syntax (`pipelines.prompt_syntax`), and
`pipelines.seeds` numbers a batch's seeds as A1111 does.

The package imports each name from its module on first use (PEP 562): the torch-free `settings`
module can then be read without loading torch, which keeps `studio --help` and the job schema fast.
"""

from __future__ import annotations

from attention_processors.lazy_exports import lazy_exports

_EXPORTS = {
    "Backbone": "pipelines.backbone",
    "PromptEmbeds": "pipelines.backbone",
    "UNetConditioning": "pipelines.backbone",
    "Cancelled": "pipelines.events",
    "CancelToken": "pipelines.events",
    "StepCallback": "pipelines.events",
    "StepEvent": "pipelines.events",
    "generate": "pipelines.text_to_image",
    "StepEnd": "pipelines.hooks",
    "StepEndHook": "pipelines.hooks",
    "img2img": "pipelines.image_to_image",
    "invert": "pipelines.inversion",
    "GenerationOutput": "pipelines.outputs",
    "Inversion": "pipelines.outputs",
    "reconstruct": "pipelines.reconstruction",
    "regional": "pipelines.regional_prompting",
    "Region": "pipelines.regions",
    "repaint": "pipelines.repainting",
    "TeacherForcing": "pipelines.teacher",
    "extract_loras": "pipelines.prompt_syntax",
    "parse_prompt": "pipelines.prompt_syntax",
    "DEFAULT_SAMPLER": "pipelines.samplers",
    "SAMPLERS": "pipelines.samplers",
    "resolve_sampler": "pipelines.samplers",
    "batch_seeds": "pipelines.seeds",
    "seeded_generators": "pipelines.seeds",
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
