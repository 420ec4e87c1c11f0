"""Samplers: every name runs in the one loop, matches diffusers' own pipeline, reproduces its bytes for a seed,
and the methods built on DDIM inversion refuse the others.

Oracle: diffusers' `StableDiffusionPipeline` with the same scheduler (built from the same config), which
scales the model input, seeds and steps its scheduler independently of our loop.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline
from PIL import Image

from attention_processors import BatchLayout
from pipelines import Backbone, generate, img2img, invert, reconstruct
from pipelines._denoise import denoise
from pipelines.customize import freecustom
from pipelines.mutual import mutual_edit
from pipelines.samplers import SAMPLERS, build_scheduler, resolve_sampler
from pipelines.tiny_models import tiny_sd15_pipeline
from pipelines.visctrl import visctrl

TOYWORLD = Path(__file__).resolve().parent.parent / "assets" / "toyworld"
NAMES = list(SAMPLERS)


@pytest.fixture(scope="module")
def sd15() -> Backbone:
    pipe = tiny_sd15_pipeline()
    pipe.set_progress_bar_config(disable=True)
    return Backbone.from_pipeline(pipe)


@pytest.fixture(scope="module")
def toyworld() -> Backbone:
    return Backbone.from_pipeline(StableDiffusionPipeline.from_pretrained(TOYWORLD, use_safetensors=True))


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def picture() -> Image.Image:
    x = torch.linspace(0, 255, 64).repeat(64, 1)
    rgb = torch.stack([x, x.flip(1), torch.full_like(x, 80)], dim=-1).to(torch.uint8)
    return Image.fromarray(rgb.numpy(), "RGB")


@pytest.mark.parametrize("name", NAMES)
def test_sampler_matches_stock_diffusers(sd15, name):
    """Our loop with sampler `name` equals diffusers' pipeline with that scheduler (measured: 0.0 difference)."""
    kw = dict(num_inference_steps=4, guidance_scale=5.0, width=64, height=64)
    ours = generate(sd15, "a red cube", generator=seeded(0), sampler=name, **kw)
    pipe = StableDiffusionPipeline(**sd15.pipe.components)  # the same modules, its own scheduler slot
    pipe.scheduler = build_scheduler(sd15.scheduler_config, name)
    pipe.set_progress_bar_config(disable=True)
    stock = pipe("a red cube", generator=seeded(0), output_type="latent", **kw).images
    scale = stock.abs().max()
    torch.testing.assert_close(ours.latents / scale, stock / scale, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", ["euler", "dpmpp_2m_karras"])
def test_img2img_sampler_matches_stock_diffusers(sd15, name):
    kw = dict(strength=0.6, num_inference_steps=5, guidance_scale=5.0)
    ours = img2img(sd15, "a red cube", picture(), generator=seeded(3), sampler=name, **kw)
    pipe = StableDiffusionImg2ImgPipeline(**sd15.pipe.components)
    pipe.scheduler = build_scheduler(sd15.scheduler_config, name)
    pipe.set_progress_bar_config(disable=True)
    # diffusers samples the VAE posterior; ours encodes its mean: give diffusers the mean as its image latents
    clean = sd15.encode_images(sd15.preprocess([picture()], 64, 64))
    stock = pipe(
        "a red cube", image=clean, generator=seeded(3), output_type="latent", **kw
    ).images  # a 4-channel image tensor is taken as latents
    scale = stock.abs().max()
    torch.testing.assert_close(ours.latents / scale, stock / scale, atol=1e-4, rtol=0)


def test_ddim_by_any_name_is_the_default_path(sd15):
    kw = dict(num_inference_steps=3, guidance_scale=5.0, width=64, height=64)
    default = generate(sd15, "a blue ball", generator=seeded(2), **kw)
    for name in ("ddim", "DDIM"):
        named = generate(sd15, "a blue ball", generator=seeded(2), sampler=name, **kw)
        assert torch.equal(named.latents, default.latents)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_every_sampler_gives_a_valid_reproducible_toyworld_image(toyworld, name):
    kw = dict(num_inference_steps=8, guidance_scale=5.0, sampler=name)
    first = generate(toyworld, "a red star", generator=seeded(5), **kw)
    second = generate(toyworld, "a red star", generator=seeded(5), **kw)
    assert png_bytes(first.images[0]) == png_bytes(second.images[0])
    assert torch.isfinite(first.latents).all()
    pixels = np.asarray(first.images[0]).astype(float)
    assert pixels.std() > 10  # a scene, not a flat or black frame (measured 40-60 across samplers)
    red, green, blue = (pixels[..., c] for c in range(3))
    assert ((red - np.maximum(green, blue)) > 80).sum() > 50  # and a red object (measured 150-700 pixels)


def test_names_and_errors():
    assert resolve_sampler("Euler a").name == "euler_a"
    assert resolve_sampler("DPM++ 2M Karras").name == "dpmpp_2m_karras"
    assert resolve_sampler("dpm++ sde").name == "dpmpp_sde"
    assert resolve_sampler("DPM++ 2M SDE").name == "dpmpp_sde"
    assert resolve_sampler("UniPC").name == "unipc"
    assert resolve_sampler("LCM").name == "lcm"
    with pytest.raises(ValueError, match=r"unknown sampler 'heun'; valid: ddim \('DDIM'\), euler"):
        resolve_sampler("heun")
    karras = build_scheduler(tiny_sd15_pipeline().scheduler.config, "DPM++ 2M Karras")
    assert karras.config.use_karras_sigmas and karras.config.algorithm_type == "dpmsolver++"


def test_the_pipelines_scheduler_is_never_replaced(sd15):
    before = sd15.pipe.scheduler
    config = dict(before.config)
    generate(sd15, "a cat", generator=seeded(0), num_inference_steps=2, sampler="euler_a", width=64, height=64)
    assert sd15.pipe.scheduler is before and dict(before.config) == config


def test_stochastic_sampler_needs_a_generator(sd15):
    noise = torch.randn(1, 4, 32, 32, generator=seeded(1))
    with pytest.raises(ValueError, match="draws noise at every step"):
        generate(sd15, "a cat", latents=noise, sampler="euler_a", num_inference_steps=2)
    generate(sd15, "a cat", latents=noise, sampler="euler", num_inference_steps=2)  # deterministic: fine


def test_ddim_methods_refuse_other_samplers(sd15):
    image = picture()
    mask = torch.ones(64, 64)
    with pytest.raises(ValueError, match=r"^inversion needs the DDIM sampler, got 'Euler a': DDIM inversion"):
        invert(sd15, image, num_inference_steps=2, sampler="euler_a")
    inversion = invert(sd15, image, num_inference_steps=2)
    with pytest.raises(ValueError, match="reconstruction of a DDIM inversion needs the DDIM sampler"):
        reconstruct(sd15, inversion, sampler="unipc")
    with pytest.raises(ValueError, match="real image needs the DDIM sampler"):
        mutual_edit(sd15, "a dog", source_image=image, num_inference_steps=2, sampler="euler")
    with pytest.raises(ValueError, match="VisCtrl needs the DDIM sampler"):
        visctrl(sd15, image, mask, [(image, mask)], sampler="DPM++ 2M")
    with pytest.raises(ValueError, match="FreeCustom needs the DDIM sampler"):
        freecustom(sd15, "a hat", [], generator=seeded(0), num_inference_steps=2, sampler="lcm")
    with pytest.raises(ValueError, match="teacher forcing needs a DDIM scheduler, got EulerDiscreteScheduler"):
        euler = build_scheduler(sd15.scheduler_config, "euler")
        euler.set_timesteps(2)
        embeds = sd15.encode_prompts([""], None, cfg=False)
        denoise(
            sd15, inversion.x_T, scheduler=euler, timesteps=euler.timesteps, embeds=embeds,
            layout=BatchLayout.without_cfg(["source"]), guidance_scale=1.0, teacher={0: inversion.stream(0)},
        )  # fmt: skip
    # synthesis has no inversion to replay: any sampler runs
    out = mutual_edit(
        sd15, "a dog", num_inference_steps=2, sampler="euler_a", generator=seeded(0), width=64, height=64
    )
    assert len(out.images) == 1


@pytest.mark.parametrize("name", ["dpmpp_2m", "dpmpp_2m_karras", "unipc"])
def test_pred_x0_of_samplers_that_return_none_is_their_own(name):
    """DPM-Solver and UniPC return no x0; the step computes it. Oracle: the scheduler's own data prediction
    (`convert_model_output`, which those solvers step with), at the same step."""
    from pipelines.samplers import SchedulerStep

    config = tiny_sd15_pipeline().scheduler.config
    stepper, oracle = build_scheduler(config, name), build_scheduler(config, name)
    for s in (stepper, oracle):
        s.set_timesteps(6)
    sample = torch.randn(2, 4, 8, 8, generator=seeded(0))
    for i, t in enumerate(stepper.timesteps[:3]):
        output = torch.randn(2, 4, 8, 8, generator=seeded(10 + i))
        if oracle.step_index is None:
            oracle._init_step_index(t)  # as its step() does first
        expected = oracle.convert_model_output(output, sample=sample)  # (2, 4, 8, 8)
        oracle.step(output, t, sample)
        sample_next, pred_x0 = SchedulerStep()(stepper, output, t, sample)
        torch.testing.assert_close(pred_x0, expected, atol=1e-5, rtol=1e-5)
        sample = sample_next


def test_a_sampler_on_sdxl_matches_stock_diffusers():
    from diffusers import StableDiffusionXLPipeline

    from pipelines.tiny_models import tiny_sdxl_pipeline

    sdxl = Backbone.from_pipeline(tiny_sdxl_pipeline())
    kw = dict(num_inference_steps=3, guidance_scale=5.0, width=64, height=64)
    ours = generate(sdxl, "a red cube", generator=seeded(0), sampler="Euler a", **kw)
    pipe = StableDiffusionXLPipeline(**sdxl.pipe.components)
    pipe.scheduler = build_scheduler(sdxl.scheduler_config, "euler_a")
    pipe.set_progress_bar_config(disable=True)
    stock = pipe("a red cube", generator=seeded(0), output_type="latent", **kw).images
    scale = stock.abs().max()
    torch.testing.assert_close(ours.latents / scale, stock / scale, atol=1e-4, rtol=0)
