"""Where the model puts an object before sampling has begun: the first DDIM step's x0 prediction.

Why: a model can follow colour and shape yet place objects where the starting noise happens to look
like one. Averaged over many starting noises, the first step's guided x0 prediction shows what the
caption alone asks for: if position words are read, the object's colour gathers in the named region;
if not, every position prompt gives the same picture. This separates "the caption sets the layout"
from "the seed does" without running whole samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .vocab import POSITIONS


@dataclass(frozen=True)
class CellRedness:
    """Mean redness of the decoded first-step x0 per 3x3 grid cell (row, col), for one position prompt."""

    position: str
    cells: torch.Tensor  # (3, 3)

    def named_cell_rank(self) -> int:
        """0 when the cell the position words name is the reddest of the nine."""
        gx, gy = POSITIONS[self.position]
        return int((self.cells > self.cells[gy, gx]).sum())


@torch.no_grad()
def first_step_redness(pipe, positions: tuple[str, ...] = tuple(POSITIONS), samples: int = 16, steps: int = 25,
                       guidance_scale: float = 5.0, seed: int = 0) -> list[CellRedness]:
    """For "a large red square {position}, white background": redness of the guided first-step x0 per cell.

    The same `samples` starting noises are used for every position, so differences between positions come
    from the caption alone. Redness is R - (G + B) / 2 of the decoded image in [-1, 1]."""
    unet, vae, scheduler = pipe.unet, pipe.vae, pipe.scheduler
    scheduler.set_timesteps(steps)
    t = scheduler.timesteps[0]
    size = unet.config.sample_size
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(samples, unet.config.in_channels, size, size, generator=gen)  # (S, C, h, w)
    z = z.to(unet.device, unet.dtype) * scheduler.init_noise_sigma
    _, uncond = pipe.encode_prompt([""], unet.device, samples, True, [""])
    eps_u = unet(z, t, encoder_hidden_states=uncond).sample  # (S, C, h, w): the same for every position
    out = []
    for position in positions:
        cond, _ = pipe.encode_prompt([f"a large red square {position}, white background"], unet.device, samples,
                                     False)
        eps_c = unet(z, t, encoder_hidden_states=cond).sample  # (S, C, h, w)
        eps = eps_u + guidance_scale * (eps_c - eps_u)
        x0 = scheduler.step(eps, t, z).pred_original_sample  # (S, C, h, w)
        image = vae.decode(x0 / vae.config.scaling_factor).sample.clamp(-1, 1).float().cpu()  # (S, 3, H, W)
        redness = (image[:, 0] - 0.5 * (image[:, 1] + image[:, 2])).mean(0)  # (H, W)
        cells = F.adaptive_avg_pool2d(redness[None, None], 3)[0, 0]  # (3, 3)
        out.append(CellRedness(position, cells))
    return out
