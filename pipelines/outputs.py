"""What the task pipelines return."""

from __future__ import annotations

from dataclasses import dataclass

import PIL.Image
from torch import Tensor


@dataclass(frozen=True)
class GenerationOutput:
    images: list[PIL.Image.Image]  # one per item
    latents: Tensor  # (N, C, h, w) final scaled latents, before the VAE decode
    notes: tuple[str, ...] = ()  # for the user, e.g. a prompt truncated beyond the chunk limit


@dataclass(frozen=True)
class Inversion:
    """A DDIM inversion: the whole latent trajectory, kept for teacher forcing, and its end point x_T.

    `trajectory[0]` is the clean latent z_0 (the VAE posterior mean, scaled) and `trajectory[k]` sits at the
    noise level of `timesteps[T - k]` for k >= 1, where `timesteps` is the *denoising* (descending) order, so a
    DDIM loop over `timesteps` that starts at x_T retraces the trajectory backwards.
    """

    trajectory: list[Tensor]  # [z_0, z_1, ..., z_T], each (N, C, h, w)
    timesteps: list[int]  # T timesteps in denoising order, e.g. [981, 961, ..., 1]
    image_size: tuple[int, int]  # (height, width) in pixels

    @property
    def x_T(self) -> Tensor:  # noqa: N802 (the paper's name)
        return self.trajectory[-1]  # (N, C, h, w)

    @property
    def latents(self) -> Tensor:
        return self.trajectory[0]  # (N, C, h, w)

    @property
    def num_inference_steps(self) -> int:
        return len(self.timesteps)

    def stream(self, item: int) -> list[Tensor]:
        """Item `item`'s trajectory [z_0, ..., z_T], each (1, C, h, w): a teacher for one stream."""
        return [z[item : item + 1] for z in self.trajectory]
