"""Step-end hooks of the one denoising loop, on the tiny SD1.5- and SDXL-shaped models.

Contracts: a hook's returned latents are adopted exactly as diffusers' `callback_on_step_end` adopts them
(oracle: the stock diffusers pipeline with the same edit); a hook returning None changes nothing; hooks
compose in order; the `StepEnd` a hook sees is the step it follows (index, timestep, the DDIM step's own
x0 prediction); events and cancellation still come once per step, after the hooks; teacher forcing and
inversion are uses of the same loop.
"""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMInverseScheduler, DDIMScheduler

from pipelines import (
    Backbone,
    Cancelled,
    CancelToken,
    StepEnd,
    StepEvent,
    TeacherForcing,
    generate,
    img2img,
    invert,
    reconstruct,
)
from pipelines.tiny_models import tiny_sd15_pipeline, tiny_sdxl_pipeline

KW = dict(num_inference_steps=3, guidance_scale=5.0, width=64, height=64)


@pytest.fixture(scope="module")
def sd15() -> Backbone:
    return Backbone.from_pipeline(tiny_sd15_pipeline())


@pytest.fixture(scope="module")
def sdxl() -> Backbone:
    return Backbone.from_pipeline(tiny_sdxl_pipeline())


@pytest.fixture(params=["sd15", "sdxl"])
def backbone(request: pytest.FixtureRequest) -> Backbone:
    return request.getfixturevalue(request.param)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def shift_and_halve(index: int, latents: torch.Tensor) -> torch.Tensor | None:
    """The latent edit both loops apply: on even steps, roll one cell right and halve; odd steps keep."""
    return latents.roll(1, dims=-1) * 0.5 if index % 2 == 0 else None


# ---- adoption: the oracle is diffusers' callback_on_step_end ------------------------------------------------


def test_returned_latents_are_adopted_as_diffusers_callback_on_step_end_adopts_them(backbone):
    backbone.pipe.set_progress_bar_config(disable=True)
    seen_stock: list[tuple[int, int]] = []

    def stock_callback(pipe, i, t, callback_kwargs):
        seen_stock.append((i, int(t)))
        edited = shift_and_halve(i, callback_kwargs["latents"])
        return {} if edited is None else {"latents": edited}

    seen_ours: list[tuple[int, int]] = []

    def hook(end: StepEnd) -> torch.Tensor | None:
        seen_ours.append((end.index, end.timestep))
        return shift_and_halve(end.index, end.latents)

    ours = generate(backbone, "a red cube", generator=seeded(0), on_step_end=[hook], **KW).latents
    stock = backbone.pipe(
        "a red cube", generator=seeded(0), output_type="latent", callback_on_step_end=stock_callback, **KW
    ).images
    plain = generate(backbone, "a red cube", generator=seeded(0), **KW).latents
    assert seen_ours == seen_stock and len(seen_ours) == 3
    torch.testing.assert_close(ours, stock, atol=1e-5, rtol=0)
    assert (ours - plain).abs().max() > 0.1  # the edit mattered, so the comparison can fail


def test_a_hook_returning_none_changes_nothing(backbone):
    events_plain: list[StepEvent] = []
    events_hooked: list[StepEvent] = []
    ends: list[StepEnd] = []
    plain = generate(backbone, ["a", "b"], generator=seeded(1), on_step=events_plain.append, **KW).latents
    hooked = generate(backbone, ["a", "b"], generator=seeded(1), on_step=events_hooked.append,
                      on_step_end=[ends.append], **KW).latents  # fmt: skip
    assert torch.equal(hooked, plain)
    assert len(events_hooked) == len(events_plain) == len(ends) == 3
    for a, b, end in zip(events_plain, events_hooked, ends, strict=True):
        assert (a.index, a.total, a.timestep, a.branch) == (b.index, b.total, b.timestep, b.branch)
        assert torch.equal(a.latents, b.latents)
        assert end.latents is b.latents  # the event reports what the hooks left


def test_step_end_describes_the_step_it_follows(sd15):
    """Index, schedule, roles, scheduler; and model_output/pred_x0 are the DDIM step's own (eps formula)."""
    ends: list[StepEnd] = []
    out = generate(sd15, ["a", "b"], generator=seeded(2), on_step_end=[ends.append], **KW)
    scheduler = sd15.ddim_scheduler()
    scheduler.set_timesteps(3)
    schedule = tuple(int(t) for t in scheduler.timesteps)
    assert [(e.branch, e.index, e.total, e.timestep) for e in ends] == [("denoise", i, 3, t) for i, t in
                                                                          enumerate(schedule)]  # fmt: skip
    for end in ends:
        assert end.timesteps == schedule
        assert end.plan.keys == (("target", 0), ("target", 1)) and end.plan.streams_of("target") == (0, 1)
        assert end.plan.layout.has_cfg and isinstance(end.scheduler, DDIMScheduler)
        assert end.sample.shape == end.model_output.shape == end.pred_x0.shape == end.latents.shape == (2, 4, 32, 32)
        alpha = end.scheduler.alphas_cumprod[end.timestep]
        x0 = (end.sample - (1 - alpha).sqrt() * end.model_output) / alpha.sqrt()
        torch.testing.assert_close(end.pred_x0, x0, atol=1e-5, rtol=1e-5)
    for before, after in zip(ends, ends[1:], strict=False):
        assert after.sample is before.latents  # each step starts from what the previous one adopted
    assert torch.equal(ends[-1].latents, out.latents)


# ---- composition ----------------------------------------------------------------------------------------------


def test_hooks_compose_in_order(sd15):
    given_by_first: list[torch.Tensor] = []
    seen_by_second: list[torch.Tensor] = []

    def plus_one(end: StepEnd) -> torch.Tensor:
        given_by_first.append(end.latents + 1)
        return given_by_first[-1]

    def double(end: StepEnd) -> torch.Tensor:
        seen_by_second.append(end.latents)
        return end.latents * 2

    def both(end: StepEnd) -> torch.Tensor:
        return (end.latents + 1) * 2

    kw = dict(KW, num_inference_steps=2)
    composed = generate(sd15, "a", generator=seeded(3), on_step_end=[plus_one, double], **kw).latents
    assert len(seen_by_second) == 2
    assert all(b is a for a, b in zip(given_by_first, seen_by_second, strict=True))
    single = generate(sd15, "a", generator=seeded(3), on_step_end=[both], **kw).latents
    reversed_ = generate(sd15, "a", generator=seeded(3), on_step_end=[double, plus_one], **kw).latents
    assert torch.equal(composed, single)
    assert not torch.allclose(composed, reversed_)


def test_a_hook_must_keep_the_latent_shape(sd15):
    with pytest.raises(ValueError, match=r"returned latents \(1, 4, 32, 32\); expected \(2, 4, 32, 32\)"):
        generate(sd15, ["a", "b"], generator=seeded(0), on_step_end=[lambda end: end.latents[:1]], **KW)


def test_img2img_adopts_hooks_too(sd15):
    from PIL import Image

    image = Image.new("RGB", (64, 64), (200, 40, 40))
    kw = dict(num_inference_steps=4, strength=0.5, guidance_scale=5.0)
    ends: list[StepEnd] = []
    plain = img2img(sd15, "a", image, generator=seeded(0), on_step_end=[ends.append], **kw).latents
    zeroed = img2img(sd15, "a", image, generator=seeded(0), on_step_end=[lambda e: e.latents * 0], **kw).latents
    assert len(ends) == 2 and torch.equal(zeroed, torch.zeros_like(zeroed))
    assert not torch.equal(plain, zeroed)


# ---- events and cancellation around hooks ------------------------------------------------------------------


def test_a_hook_that_cancels_stops_at_the_next_step_boundary(sd15):
    token = CancelToken()
    events: list[int] = []

    def cancel_after_step_1(end: StepEnd) -> None:
        if end.index == 1:
            token.cancel()

    with pytest.raises(Cancelled) as info:
        generate(sd15, "a", generator=seeded(0), on_step_end=[cancel_after_step_1], cancel=token,
                 on_step=lambda e: events.append(e.index), **dict(KW, num_inference_steps=4))  # fmt: skip
    assert events == [0, 1]  # the event of the step the hook ran in still comes
    assert (info.value.index, info.value.total, info.value.branch) == (2, 4, "denoise")


# ---- teacher forcing and inversion are uses of the loop ------------------------------------------------------


def test_teacher_forcing_hook_walks_the_stored_trajectory(backbone):
    z0 = torch.randn(2, 4, 32, 32, generator=seeded(4))
    inversion = invert(backbone, z0, ["a", "b"], num_inference_steps=4, guidance_scale=3.0)
    forcing = TeacherForcing({0: inversion.stream(0), 1: inversion.stream(1)})
    events: list[StepEvent] = []
    out = reconstruct(backbone, inversion, ["a", "b"], guidance_scale=3.0, on_step_end=[forcing],
                      on_step=events.append)  # fmt: skip
    assert torch.equal(out.latents, z0)
    assert all(torch.equal(e.latents, inversion.trajectory[3 - e.index]) for e in events)
    convenience = reconstruct(backbone, inversion, ["a", "b"], guidance_scale=3.0, teacher_forcing=True)
    assert torch.equal(convenience.latents, out.latents)


def test_teacher_forcing_runs_before_the_callers_hooks(sd15):
    inversion = invert(sd15, torch.randn(1, 4, 32, 32, generator=seeded(5)), num_inference_steps=3)
    seen: list[torch.Tensor] = []
    reconstruct(sd15, inversion, teacher_forcing=True, on_step_end=[lambda end: seen.append(end.latents)])
    assert all(torch.equal(z, inversion.trajectory[2 - i]) for i, z in enumerate(seen))


def test_inversion_runs_the_same_loop_with_the_inverse_step(backbone):
    """Hooks see branch "invert" and the inverse scheduler; the trajectory records the latents they return."""
    z0 = torch.randn(1, 4, 32, 32, generator=seeded(6))
    ends: list[StepEnd] = []
    plain = invert(backbone, z0, "a", num_inference_steps=3, on_step_end=[ends.append])
    assert [(e.branch, e.index, e.timestep) for e in ends] == [("invert", i, t) for i, t in
                                                               enumerate(reversed(plain.timesteps))]  # fmt: skip
    assert all(isinstance(e.scheduler, DDIMInverseScheduler) for e in ends)
    assert all(e.latents is z for e, z in zip(ends, plain.trajectory[1:], strict=True))
    assert all(e.sample is z for e, z in zip(ends, plain.trajectory[:-1], strict=True))
    halved = invert(backbone, z0, "a", num_inference_steps=3, on_step_end=[lambda end: end.latents * 0.5])
    assert torch.equal(halved.trajectory[0], z0)
    assert not torch.equal(halved.trajectory[1], plain.trajectory[1])
    torch.testing.assert_close(halved.trajectory[1], plain.trajectory[1] * 0.5, atol=0, rtol=0)
