"""IP-Adapter as a studio control against diffusers' own IP-Adapter (`pipe.load_ip_adapter` and its
`IPAdapterAttnProcessor2_0`), on the tiny SD1.5 and SDXL models with random adapters in the official layout.

The oracle pipeline is a second copy of the same tiny model (built from the same seed), so diffusers'
processor swap on it leaves the studio's copy untouched. Both run DDIM from the same generator and are
compared on the final latents (the image before the VAE) within 1e-5.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers.image_processor import IPAdapterMaskProcessor

from pipelines.backbone import Backbone
from pipelines.ip_adapter import ImagePrompt
from pipelines.ip_adapter_weights import load_adapter
from pipelines.text_to_image import generate
from pipelines.tiny_models import tiny_sd15_pipeline, tiny_sdxl_pipeline
from tests.ip_adapter_files import tiny_image_encoder, write_adapter

SIZE = 64  # pixels; the tiny models' latent is 32x32
STEPS = 3
GUIDANCE = 5.0
BUILDERS = {"sd15": tiny_sd15_pipeline, "sdxl": tiny_sdxl_pipeline}
# Per-block scales in diffusers' dict form, one layout per family (InstantStyle-style: some blocks off).
BLOCK_SCALES = {
    "sd15": {"down": {"block_1": 0.8}, "up": {"block_1": [0.0, 1.3]}},
    "sdxl": {"up": {"block_0": [0.0, 1.0, 0.5]}},
}


def with_encoder(pipe):
    encoder, extractor = tiny_image_encoder()
    pipe.register_modules(image_encoder=encoder, feature_extractor=extractor)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def picture(seed: int, width: int = 40, height: int = 48) -> PIL.Image.Image:
    pixels = np.random.RandomState(seed).rand(height, width, 3) * 255
    return PIL.Image.fromarray(pixels.astype("uint8"), "RGB")


def half_mask(side: str) -> PIL.Image.Image:
    mask = np.zeros((SIZE, SIZE), dtype="uint8")
    if side == "left":
        mask[:, : SIZE // 2] = 255
    else:
        mask[:, SIZE // 2 :] = 255
    return PIL.Image.fromarray(mask, "L")


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def family(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def models(family):
    """(the studio's backbone, diffusers' pipeline) on identical copies of the tiny model."""
    return Backbone.from_pipeline(with_encoder(BUILDERS[family]())), with_encoder(BUILDERS[family]())


@pytest.fixture(scope="module")
def adapters(models, tmp_path_factory) -> dict[str, Path]:
    unet = models[0].unet
    folder = tmp_path_factory.mktemp("adapters")
    return {
        "base": write_adapter(folder, unet, "base", seed=1),
        "base2": write_adapter(folder, unet, "base", seed=2),
        "plus": write_adapter(folder, unet, "plus", seed=3),
        "full": write_adapter(folder, unet, "full", seed=5),
    }


def diffusers_latents(pipe, files: list[Path], images, scales, masks=None, steps: int = STEPS) -> torch.Tensor:
    pipe.load_ip_adapter(
        str(files[0].parent),
        subfolder=[""] * len(files),
        weight_name=[f.name for f in files],
        image_encoder_folder=None,
    )
    try:
        pipe.set_ip_adapter_scale(scales)
        extra = {} if masks is None else {"cross_attention_kwargs": {"ip_adapter_masks": masks}}
        return pipe(
            "a red cube", ip_adapter_image=images, num_inference_steps=steps, guidance_scale=GUIDANCE,
            width=SIZE, height=SIZE, generator=torch.Generator().manual_seed(0), output_type="latent", **extra,
        ).images  # fmt: skip
    finally:
        encoder, extractor = pipe.image_encoder, pipe.feature_extractor
        pipe.unload_ip_adapter()
        pipe.register_modules(image_encoder=encoder, feature_extractor=extractor)


def studio_latents(backbone, prompts: list[ImagePrompt], controls=None, steps: int = STEPS) -> torch.Tensor:
    """`generate(image_prompts=...)`, or the prompts' control passed by hand among `controls`."""
    extra = {"image_prompts": prompts} if controls is None else {"controls": controls}
    return generate(
        backbone, "a red cube", num_inference_steps=steps, guidance_scale=GUIDANCE, width=SIZE, height=SIZE,
        generator=torch.Generator().manual_seed(0), **extra,
    ).latents  # fmt: skip


def close(got: torch.Tensor, want: torch.Tensor) -> None:
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def assert_acts(got: torch.Tensor, plain: torch.Tensor) -> None:
    assert (got - plain).abs().max() > 1e-2, "the image prompt changed nothing: the comparison would be vacuous"


@pytest.mark.parametrize("kind", ["base", "plus", "full"])
def test_one_adapter_equals_diffusers(models, adapters, kind):
    backbone, pipe = models
    file, image = adapters[kind], picture(0)
    want = diffusers_latents(pipe, [file], [image], 0.7)
    got = studio_latents(backbone, [ImagePrompt(image, load_adapter(file), 0.7)])
    close(got, want)
    assert_acts(got, studio_latents(backbone, []))
    assert load_adapter(file).kind == kind


def test_two_adapters_equal_diffusers(models, adapters):
    backbone, pipe = models
    files, images, scales = [adapters["base"], adapters["plus"]], [picture(0), picture(1)], [0.6, 0.9]
    want = diffusers_latents(pipe, files, images, scales)
    prompts = [ImagePrompt(im, load_adapter(f), s) for f, im, s in zip(files, images, scales, strict=True)]
    close(studio_latents(backbone, prompts), want)


def test_masked_adapters_equal_diffusers(models, adapters):
    """Two adapters, each confined to one half of the image (diffusers' IPAdapterMaskProcessor semantics).

    One step: diffusers weighs a masked branch as `scale · (o · m)`, the groups as `o · (scale · m)`; the
    last-bit difference at the soft (bicubic) mask edge grows past 1e-5 over three guided steps (1.5e-5 seen).
    """
    backbone, pipe = models
    files, images, scales = [adapters["base"], adapters["base2"]], [picture(0), picture(1)], [0.8, 0.8]
    masks = IPAdapterMaskProcessor().preprocess([half_mask("left"), half_mask("right")], height=SIZE, width=SIZE)
    want = diffusers_latents(pipe, files, images, scales, masks=[masks[0:1], masks[1:2]], steps=1)  # [1, 1, H, W]
    prompts = [
        ImagePrompt(im, load_adapter(f), s, mask=m[0])
        for f, im, s, m in zip(files, images, scales, masks, strict=True)
    ]
    close(studio_latents(backbone, prompts, steps=1), want)


def test_per_block_scales_equal_diffusers(models, adapters, family):
    backbone, pipe = models
    file, image, scale = adapters["base"], picture(0), BLOCK_SCALES[family]
    want = diffusers_latents(pipe, [file], [image], scale)
    got = studio_latents(backbone, [ImagePrompt(image, load_adapter(file), scale)])
    close(got, want)
    assert_acts(got, studio_latents(backbone, []))


def test_scale_zero_equals_no_adapter(models, adapters):
    backbone, _ = models
    prompt = ImagePrompt(picture(0), load_adapter(adapters["plus"]), 0.0)
    torch.testing.assert_close(studio_latents(backbone, [prompt]), studio_latents(backbone, []), atol=0, rtol=0)
