"""Measure Uniform Attention Maps on toyworld: reconstruction after inversion, and what an edit keeps.

Why: UAM (arXiv 2411.19652) claims two things: an inversion whose cross-attention maps are uniform
reconstructs the input better than plain DDIM inversion, and editing with its uniform branch and x̂0 mixing
keeps the unedited area closer to the input than MasaCtrl editing alone. Toyworld renders come with their
objects' masks, so both claims can be measured in pixels, against the same cases without the method.

- reconstruction: PSNR of invert → reconstruct (free-running) against the render, for plain DDIM ("" prompt),
  UAM ("" prompt, uniform maps on both legs), the caption (the text-conditioned reconstruction the paper
  compares with, without CFG and with the edit's CFG on the way back), and the VAE round trip alone (the
  ceiling every inversion shares);
- editing: one object of a render changes colour in the target prompt; PSNR outside that object (dilated)
  against the render, and whether the object took the new colour, for UAM editing, the same edit with plain
  DDIM inversion (MasaCtrl alone, the paper's baseline) and the studio's teacher-forced mutual edit.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from PIL import Image

from .captions import caption
from .detector import detect
from .metrics.pixels import masked_psnr, psnr
from .world import Background, SceneSpec, make_object, render, render_seed

RECONSTRUCTIONS = ("vae", "ddim", "uniform", "caption", "caption_cfg")
EDITS = ("uniform", "ddim", "mutual")

# (edited object: shape, colour, pattern, size, position), its new colour, another object or None, background
EDIT_CASES = (
    (("square", "red", "plain", "large", "on the left"), "blue",
     ("circle", "yellow", "striped", "", "at the top right"), "gray"),
    (("circle", "green", "plain", "large", "in the center"), "pink", None, "white"),
    (("triangle", "yellow", "plain", "large", "at the bottom"), "purple", ("star", "cyan", "plain", "small",
     "at the top left"), "beige"),
    (("star", "blue", "dotted", "", "on the right"), "orange", ("ring", "red", "plain", "", "on the left"), "gray"),
    (("cross", "purple", "plain", "large", "at the top"), "green", None, "black"),
    (("ring", "cyan", "plain", "large", "at the bottom left"), "red", ("square", "orange", "checkered", "small",
     "at the top right"), "white"),
)  # fmt: skip


@dataclass(frozen=True)
class Table:
    """Mean figures per variant over `cases`."""

    values: dict[str, float]
    cases: int

    def line(self, name: str, unit: str = "dB") -> str:
        cells = "   ".join(f"{k} {v:6.2f}{' ' + unit if unit else ''}" for k, v in self.values.items())
        return f"{name:<22} {cells}   ({self.cases} cases)"


@torch.no_grad()
def reconstruction(backbone, seeds: int = 8, steps: int = 10, guidance: float = 7.5) -> Table:
    """Mean PSNR (dB) of each RECONSTRUCTIONS variant over renders of seeds 0..seeds-1, DDIM `steps`."""
    from pipelines.inversion import invert
    from pipelines.reconstruction import reconstruct

    sums = dict.fromkeys(RECONSTRUCTIONS, 0.0)
    for seed in range(seeds):
        scene = render_seed(seed)
        image, text = Image.fromarray(scene.image), caption(scene.spec)
        size = {"height": image.height, "width": image.width}
        latents = backbone.encode_images(backbone.preprocess([image], **size))
        sums["vae"] += psnr(image, backbone.latents_to_pil(latents)[0])
        for name, prompt, uniform, back in (
            ("ddim", "", False, 1.0),
            ("uniform", "", True, 1.0),
            ("caption", text, False, 1.0),
            ("caption_cfg", text, False, guidance),
        ):
            inverted = invert(backbone, image, prompt, num_inference_steps=steps, uniform=uniform)
            rebuilt = reconstruct(backbone, inverted, prompt, guidance_scale=back, uniform=uniform).images[0]
            sums[name] += psnr(image, rebuilt)
    return Table({k: v / seeds for k, v in sums.items()}, seeds)


@torch.no_grad()
def uniform_effect(backbone, seeds: int = 6, timesteps: tuple[int, ...] = (100, 500, 900)) -> Table:
    """How much uniform maps change the UNet's prediction: mean ||eps - eps_uniform|| / ||eps|| on noised renders,
    for the empty prompt (what plain DDIM inversion uses) and for the caption.

    Why: UAM can only reconstruct better where text attention that depends on position perturbs inversion;
    a small change with the empty prompt bounds what it can gain over plain DDIM inversion."""
    from attention_processors import BatchLayout, attention_control
    from attention_processors.uniform_attention import UniformCrossAttention

    sums = {"empty": 0.0, "caption": 0.0}
    layout = BatchLayout.without_cfg(["source"])
    scheduler = backbone.ddim_scheduler()
    for seed in range(seeds):
        scene = render_seed(seed)
        image = Image.fromarray(scene.image)
        clean = backbone.encode_images(backbone.preprocess([image], image.height, image.width))  # (1, C, h, w)
        noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(seed)).to(clean)
        for name, prompt in (("empty", ""), ("caption", caption(scene.spec))):
            text = backbone.encode_prompts([prompt], cfg=False).cond
            for t in timesteps:
                noisy = scheduler.add_noise(clean, noise, torch.tensor([t]))  # (1, C, h, w)
                predictions = []
                for controls in ([], [UniformCrossAttention()]):
                    with attention_control(backbone.unet, controls) as state:
                        state.update(index=0, total=1, timestep=t, layout=layout, latent_size=tuple(clean.shape[-2:]))
                        predictions.append(backbone.unet(noisy, t, encoder_hidden_states=text).sample)
                change = (predictions[0] - predictions[1]).norm() / predictions[0].norm()
                sums[name] += float(change) / (seeds * len(timesteps))
    return Table(sums, seeds * len(timesteps))


@dataclass(frozen=True)
class EditCase:
    image: Image.Image
    target_prompt: str
    source_prompt: str
    edited: np.ndarray  # (H, W) bool: the edited object, dilated; everything else should stay
    colour: str  # the edited object's new colour


def edit_cases(count: int = len(EDIT_CASES), dilate_px: int = 4) -> list[EditCase]:
    cases = []
    for obj, colour, other, background in EDIT_CASES[:count]:
        objects = (make_object(*obj),) + ((make_object(*other),) if other else ())
        scene = SceneSpec(objects, Background("plain", background))
        rendered = render(scene)
        edited_scene = SceneSpec((make_object(obj[0], colour, *obj[2:]),) + objects[1:], scene.background)
        kernel = np.ones((2 * dilate_px + 1, 2 * dilate_px + 1), np.uint8)
        edited = cv2.dilate(rendered.objects[0].mask.astype(np.uint8), kernel) > 0
        cases.append(EditCase(Image.fromarray(rendered.image), caption(edited_scene), caption(scene), edited, colour))
    return cases


def _took_colour(image: Image.Image, region: np.ndarray, colour: str) -> bool:
    return any(d.color == colour and (d.mask & region).sum() >= 0.5 * d.mask.sum() for d in detect(image).objects)


@torch.no_grad()
def editing(backbone, cases: int = 4, steps: int = 25, guidance: float = 2.0) -> tuple[Table, Table]:
    """(mean PSNR outside the edited object, share of edits whose object took the new colour) per EDITS variant.

    Every variant gets the same render, prompts, steps and CFG; the source prompt is "" (the official choice)."""
    from pipelines.mutual import mutual_edit
    from pipelines.uniform_edit import uniform_edit

    kept = dict.fromkeys(EDITS, 0.0)
    done = dict.fromkeys(EDITS, 0.0)
    chosen = edit_cases(cases)
    for case in chosen:
        schedule = {"num_inference_steps": steps, "guidance_scale": guidance}
        outputs = {
            "uniform": uniform_edit(backbone, case.image, case.target_prompt, **schedule).images[0],
            "ddim": uniform_edit(backbone, case.image, case.target_prompt, inversion="ddim", **schedule).images[0],
            "mutual": mutual_edit(backbone, case.target_prompt, source_image=case.image, **schedule).images[0],
        }
        for name, out in outputs.items():
            kept[name] += masked_psnr(case.image, out, case.edited, outside=True)
            done[name] += _took_colour(out, case.edited, case.colour)
    n = len(chosen)
    return Table({k: v / n for k, v in kept.items()}, n), Table({k: v / n for k, v in done.items()}, n)
