"""txt2img / img2img pipelines and the backbone on the tiny SD1.5- and SDXL-shaped models.

Contracts: plain generation through our processors equals stock diffusers; same seed gives the same bytes;
a batch equals its single runs; one event per step; cancellation stops at a step boundary and leaves the
UNet's processors as they were; sizes are validated.
"""

from __future__ import annotations

import io

import pytest
import torch
from diffusers import DDIMScheduler
from PIL import Image

from attention_processors import Control
from pipelines import Backbone, Cancelled, CancelToken, StepEvent, generate, img2img
from pipelines.tiny_models import tiny_sd15_pipeline, tiny_sdxl_pipeline

FAMILIES = ["sd15", "sdxl"]


@pytest.fixture(scope="module")
def sd15() -> Backbone:
    return Backbone.from_pipeline(tiny_sd15_pipeline())


@pytest.fixture(scope="module")
def sdxl() -> Backbone:
    return Backbone.from_pipeline(tiny_sdxl_pipeline())


@pytest.fixture(params=FAMILIES)
def backbone(request: pytest.FixtureRequest) -> Backbone:
    return request.getfixturevalue(request.param)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def assert_same_up_to_rounding(batch: torch.Tensor, single: torch.Tensor) -> None:
    """Batch-equals-single at 1e-5 of the latents' range.

    Why relative: the tiny random-weight UNet is no denoiser, so DDIM drives its latents to |x| ~ 10, and its
    batch-size-dependent float rounding (~1.5e-6 per UNet call, measured) is magnified ~14x by the first
    x0-prediction (1 / sqrt(alpha_bar(981))). Measured: 1.2e-5 to 2.3e-5 absolute over 2 to 4 steps.
    """
    scale = single.abs().max()
    torch.testing.assert_close(batch / scale, single / scale, atol=1e-5, rtol=0)


def picture(width: int = 64, height: int = 64) -> Image.Image:
    """A deterministic RGB test picture: a gradient with a bright square."""
    x = torch.linspace(0, 255, width).repeat(height, 1)
    rgb = torch.stack([x, x.flip(1), torch.full_like(x, 80)], dim=-1)
    rgb[height // 4 : height // 2, width // 4 : width // 2] = 230
    return Image.fromarray(rgb.to(torch.uint8).numpy(), "RGB")


class StepRecorder(Control):
    """Acts nowhere; records the step state every UNet call publishes (read by `active`, once per site)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, int, int, int, tuple[int, int]]] = []

    def active(self, site, state) -> bool:
        entry = (state.branch, state.index, state.total, state.timestep, state.layout.size, state.latent_size)
        if not self.seen or self.seen[-1] != entry:
            self.seen.append(entry)
        return False


# ---- equivalence and determinism ---------------------------------------------------------------------------


def test_plain_generation_equals_stock_diffusers(backbone):
    """Our DDIM loop through our processors reproduces the diffusers pipeline with its stock processors."""
    backbone.pipe.set_progress_bar_config(disable=True)
    kw = dict(num_inference_steps=3, guidance_scale=5.0, width=64, height=64)
    ours = generate(backbone, "a red cube", generator=seeded(0), **kw)
    stock = backbone.pipe("a red cube", generator=seeded(0), output_type="latent", **kw).images
    torch.testing.assert_close(ours.latents, stock, atol=1e-5, rtol=0)


def test_same_seed_is_bit_identical(backbone):
    kw = dict(num_inference_steps=3, guidance_scale=5.0, width=64, height=64)
    first = generate(backbone, "a blue ball", generator=seeded(7), **kw)
    second = generate(backbone, "a blue ball", generator=seeded(7), **kw)
    assert torch.equal(first.latents, second.latents)
    assert png_bytes(first.images[0]) == png_bytes(second.images[0])
    other = generate(backbone, "a blue ball", generator=seeded(8), **kw)
    assert not torch.equal(first.latents, other.latents)


def test_batch_equals_single_runs(backbone):
    """With one generator per item, item i of a batch equals a single run seeded like generator i."""
    kw = dict(num_inference_steps=3, guidance_scale=5.0, width=64, height=64)
    prompts = ["a red cube", "a green cone"]
    batch = generate(backbone, prompts, negative_prompt=["blurry", "dark"], generator=[seeded(1), seeded(2)], **kw)
    single0 = generate(backbone, prompts[0], negative_prompt="blurry", generator=seeded(1), **kw)
    single1 = generate(backbone, prompts[1], negative_prompt="dark", generator=seeded(2), **kw)
    assert_same_up_to_rounding(batch.latents, torch.cat([single0.latents, single1.latents]))
    assert len(batch.images) == 2


def test_one_generator_feeds_items_in_order(sd15):
    """With a single generator, item 0 takes its first draw, item 1 the second (documented rule)."""
    kw = dict(num_inference_steps=2, guidance_scale=1.0, width=64, height=64)
    batch = generate(sd15, ["a", "b"], generator=seeded(4), **kw)
    first = generate(sd15, "a", generator=seeded(4), **kw)
    assert_same_up_to_rounding(batch.latents[:1], first.latents)
    with pytest.raises(ValueError, match="generators for 2 items"):
        generate(sd15, ["a", "b"], generator=[seeded(1)], **kw)


def test_given_latents_replace_the_generator(sd15):
    kw = dict(num_inference_steps=2, guidance_scale=5.0, width=64, height=64)
    noise = torch.randn(1, 4, 32, 32, generator=seeded(5))
    from_latents = generate(sd15, "a cat", latents=noise, **kw)
    from_seed = generate(sd15, "a cat", generator=seeded(5), **kw)
    assert torch.equal(from_latents.latents, from_seed.latents)
    with pytest.raises(ValueError, match="Generator"):
        generate(sd15, "a cat", **kw)
    with pytest.raises(ValueError, match="latents must have shape"):
        generate(sd15, "a cat", latents=torch.zeros(1, 4, 16, 16), **kw)


def test_any_aspect_ratio(backbone):
    out = generate(backbone, "a wide scene", num_inference_steps=2, width=96, height=32, generator=seeded(0))
    assert out.images[0].size == (96, 32)
    assert out.latents.shape == (1, 4, 16, 48)


# ---- step state, events, CFG layout ------------------------------------------------------------------------


def test_events_and_step_state_each_step(backbone):
    events: list[StepEvent] = []
    recorder = StepRecorder()
    generate(
        backbone, "a star", num_inference_steps=4, guidance_scale=5.0, width=64, height=32,
        generator=seeded(0), controls=[recorder], on_step=events.append,
    )  # fmt: skip
    scheduler = backbone.ddim_scheduler()
    scheduler.set_timesteps(4)
    timesteps = [int(t) for t in scheduler.timesteps]
    assert [e.index for e in events] == [0, 1, 2, 3]
    assert {(e.total, e.branch) for e in events} == {(4, "denoise")}
    assert [e.timestep for e in events] == timesteps
    assert all(e.latents.shape == (1, 4, 16, 32) for e in events)
    # the step state was published before every UNet call: CFG doubles the rows, not the calls
    assert recorder.seen == [("denoise", i, 4, t, 2, (16, 32)) for i, t in enumerate(timesteps)]


def test_guidance_at_most_one_runs_without_cfg(sd15):
    recorder = StepRecorder()
    out = generate(sd15, ["a", "b"], num_inference_steps=2, guidance_scale=1.0, width=64, height=64,
                   generator=[seeded(0), seeded(1)], controls=[recorder])  # fmt: skip
    assert {entry[4] for entry in recorder.seen} == {2}  # one row per item
    assert out.latents.shape[0] == 2


# ---- cancellation ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [0, 2])
def test_cancel_after_step_k_restores_processors(backbone, k):
    unet = backbone.unet
    before = unet.attn_processors
    token = CancelToken()
    seen: list[int] = []

    def on_step(event: StepEvent) -> None:
        seen.append(event.index)
        if event.index == k:
            token.cancel()

    with pytest.raises(Cancelled) as info:
        generate(backbone, "a dog", num_inference_steps=4, width=64, height=64, generator=seeded(0),
                 on_step=on_step, cancel=token)  # fmt: skip
    assert seen == list(range(k + 1))
    assert (info.value.index, info.value.total, info.value.branch) == (k + 1, 4, "denoise")
    after = unet.attn_processors
    assert after.keys() == before.keys()
    assert all(after[name] is before[name] for name in before)


def test_cancel_after_last_step_and_before_first(sd15):
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled, match="before step 0 of 2"):
        generate(sd15, "a", num_inference_steps=2, width=64, height=64, generator=seeded(0), cancel=token)
    late = CancelToken()
    with pytest.raises(Cancelled) as info:
        generate(sd15, "a", num_inference_steps=2, width=64, height=64, generator=seeded(0), cancel=late,
                 on_step=lambda e: late.cancel() if e.index == 1 else None)  # fmt: skip
    assert info.value.index == 2


def test_exception_in_callback_restores_processors(sd15):
    before = sd15.unet.attn_processors

    def boom(event: StepEvent) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        generate(sd15, "a", num_inference_steps=2, width=64, height=64, generator=seeded(0), on_step=boom)
    after = sd15.unet.attn_processors
    assert all(after[name] is before[name] for name in before)


# ---- validation --------------------------------------------------------------------------------------------


def test_size_validation(sd15, sdxl):
    # tiny SD1.5: VAE factor 2 x UNet downsampling 4 (three blocks) -> multiples of 8 px
    assert sd15.size_multiple == 8 and sdxl.size_multiple == 4
    with pytest.raises(ValueError, match=r"multiples of 8 .*got 60x64 .*nearest valid: 64x64"):
        generate(sd15, "a", num_inference_steps=1, height=60, width=64, generator=seeded(0))
    with pytest.raises(ValueError, match="multiples of 4"):
        generate(sdxl, "a", num_inference_steps=1, height=64, width=66, generator=seeded(0))
    with pytest.raises(ValueError, match="positive multiples"):
        generate(sd15, "a", num_inference_steps=1, height=-8, width=64, generator=seeded(0))
    with pytest.raises(ValueError, match="multiples of 8"):
        img2img(sd15, "a", picture(60, 60), num_inference_steps=2, generator=seeded(0))
    assert sd15.default_size == (64, 64)


def test_other_argument_validation(sd15):
    with pytest.raises(ValueError, match="num_inference_steps"):
        generate(sd15, "a", num_inference_steps=0, generator=seeded(0))
    with pytest.raises(ValueError, match="negative prompts for 2 prompts"):
        generate(sd15, ["a", "b"], negative_prompt=["x"], num_inference_steps=1, generator=seeded(0))
    with pytest.raises(ValueError, match="prompt must be"):
        generate(sd15, [], num_inference_steps=1, generator=seeded(0))
    with pytest.raises(ValueError, match="strength"):
        img2img(sd15, "a", picture(), strength=0.0, generator=seeded(0))
    with pytest.raises(ValueError, match="runs no step"):
        img2img(sd15, "a", picture(), strength=0.1, num_inference_steps=5, generator=seeded(0))
    with pytest.raises(ValueError, match="2 images for 3 prompts"):
        img2img(sd15, ["a", "b", "c"], [picture(), picture()], generator=seeded(0))


# ---- img2img -----------------------------------------------------------------------------------------------


def test_img2img_runs_the_tail_of_the_schedule(backbone):
    events: list[StepEvent] = []
    out = img2img(backbone, "a red cube", picture(64, 32), strength=0.5, num_inference_steps=6,
                  generator=seeded(0), on_step=events.append)  # fmt: skip
    scheduler = backbone.ddim_scheduler()
    scheduler.set_timesteps(6)
    assert [e.timestep for e in events] == [int(t) for t in scheduler.timesteps[3:]]
    assert out.images[0].size == (64, 32)
    again = img2img(backbone, "a red cube", picture(64, 32), strength=0.5, num_inference_steps=6, generator=seeded(0))
    assert torch.equal(out.latents, again.latents)


def test_img2img_batch_equals_single(backbone):
    kw = dict(strength=0.75, num_inference_steps=4, guidance_scale=5.0)
    images = [picture(), picture().transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    batch = img2img(backbone, ["a cat", "a dog"], images, generator=[seeded(3), seeded(4)], **kw)
    single = img2img(backbone, "a dog", images[1], generator=seeded(4), **kw)
    assert_same_up_to_rounding(batch.latents[1:], single.latents)


def test_img2img_strength_one_ignores_the_image_content(sd15):
    """At strength 1 the start latent is ~pure noise (alpha_bar(981) ~ 0.005), so the image barely matters."""
    kw = dict(strength=1.0, num_inference_steps=4, guidance_scale=1.0)
    a = img2img(sd15, "a", picture(), generator=seeded(0), **kw).latents
    b = img2img(sd15, "a", Image.new("RGB", (64, 64), (0, 0, 0)), generator=seeded(0), **kw).latents
    c = img2img(sd15, "a", picture(), generator=seeded(1), **kw).latents
    assert (a - b).abs().mean() < 0.2 * (a - c).abs().mean()


# ---- backbone ----------------------------------------------------------------------------------------------


def test_backbone_reads_the_family(sd15, sdxl):
    assert not sd15.is_sdxl and sdxl.is_sdxl
    assert sd15.dtype == torch.float32 and sd15.device.type == "cpu"
    with pytest.raises(TypeError, match="StableDiffusionPipeline"):
        Backbone.from_pipeline(object())


def test_sdxl_conditioning_has_pooled_and_time_ids(sdxl):
    embeds = sdxl.encode_prompts(["a", "b"], None, cfg=True)
    assert embeds.cond.shape == (2, 77, 64) and embeds.cond_pooled.shape == (2, 32)
    assert torch.count_nonzero(embeds.uncond) == 0  # diffusers' force_zeros_for_empty_prompt
    cond = sdxl.conditioning(embeds, [(1, "uncond"), (0, "cond"), (1, "cond")], (64, 96))
    assert cond.encoder_hidden_states.shape == (3, 77, 64)
    torch.testing.assert_close(cond.encoder_hidden_states[2], embeds.cond[1])
    assert cond.added_cond_kwargs["time_ids"].tolist() == [[64.0, 96.0, 0.0, 0.0, 64.0, 96.0]] * 3
    assert cond.added_cond_kwargs["text_embeds"].shape == (3, 32)
    plain = sdxl.encode_prompts(["a"], None, cfg=False)
    assert plain.uncond is None
    with pytest.raises(ValueError, match="not encoded"):
        sdxl.conditioning(plain, [(0, "uncond")], (64, 64))


def test_sd15_conditioning_is_text_only(sd15):
    embeds = sd15.encode_prompts(["a"], ["b"], cfg=True)
    cond = sd15.conditioning(embeds, [(0, "uncond"), (0, "cond")], (64, 64))
    assert cond.added_cond_kwargs is None
    torch.testing.assert_close(cond.encoder_hidden_states, torch.cat([embeds.uncond, embeds.cond]))


def test_vae_scaling_and_shift_read_from_config():
    """Latents are (posterior mean - shift) * scale; decode inverts exactly that (SD3/Flux-style shift)."""
    pipe = tiny_sd15_pipeline()
    backbone = Backbone.from_pipeline(pipe)
    pixels = backbone.preprocess([picture()], 64, 64)
    with torch.no_grad():
        mean = pipe.vae.encode(pixels).latent_dist.mean
        assert torch.allclose(backbone.encode_images(pixels), mean * 0.18215, atol=1e-6)
        pipe.vae.register_to_config(scaling_factor=0.5, shift_factor=0.25)
        latents = backbone.encode_images(pixels)
        assert torch.allclose(latents, (mean - 0.25) * 0.5, atol=1e-6)
        torch.testing.assert_close(backbone.decode_latents(latents), pipe.vae.decode(mean).sample, atol=1e-4, rtol=0)


def test_v_prediction_config_is_used(sd15):
    """SD2.x-style v-prediction: the DDIM scheduler the pipelines build keeps the model's prediction type."""
    pipe = tiny_sd15_pipeline()
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, prediction_type="v_prediction")
    backbone = Backbone.from_pipeline(pipe)
    assert backbone.prediction_type == "v_prediction"
    assert backbone.ddim_scheduler().config.prediction_type == "v_prediction"
    pipe.set_progress_bar_config(disable=True)
    kw = dict(num_inference_steps=2, guidance_scale=5.0, width=64, height=64)
    ours = generate(backbone, "a", generator=seeded(0), **kw).latents
    stock = pipe("a", generator=seeded(0), output_type="latent", **kw).images
    torch.testing.assert_close(ours, stock, atol=1e-5, rtol=0)
    assert not torch.allclose(ours, generate(sd15, "a", generator=seeded(0), **kw).latents)
