"""Teacher forcing as a step-end hook: chosen streams follow a stored latent trajectory.

Why: MasaCtrl and VisCtrl reconstruct a real image by overwriting its row with its DDIM inversion's stored
trajectory after every step, so the row feeds the UNet (and the controls) the inverted latents while the
other streams run free; FreeCustom re-noises its references the same way. A fully teacher-forced loop
returns z_0 exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor

from pipelines.hooks import StepEnd

Teacher = Mapping[int, Sequence[Tensor]]  # stream -> [z_0, ..., z_T], each (C, h, w) or (1, C, h, w)


class TeacherForcing:
    """For stream s, `trajectories[s] = [z_0, ..., z_T]` with T the loop's step count, as `invert` returns.

    The stream starts at z_T (`start`) and, as a step-end hook, is overwritten with z_{T-1-i} after step i of
    a denoising loop (timesteps descending).
    """

    def __init__(self, trajectories: Teacher) -> None:
        self.trajectories = trajectories

    def check(self, latents: Tensor, steps: int) -> None:
        """Raise a clear ValueError when the trajectories cannot drive a loop of `steps` over `latents`."""
        for stream, trajectory in self.trajectories.items():
            if not 0 <= stream < latents.shape[0]:
                raise ValueError(f"teacher stream {stream} is outside the {latents.shape[0]} latent streams")
            if len(trajectory) != steps + 1:
                raise ValueError(
                    f"teacher trajectory for stream {stream} has {len(trajectory)} latents; a schedule of {steps} "
                    f"steps needs {steps + 1} ([z_0, ..., z_{steps}])"
                )
            if trajectory[0].numel() != latents[0].numel():
                raise ValueError(
                    f"teacher latents {tuple(trajectory[0].shape)} do not match {tuple(latents.shape[1:])}"
                )

    def start(self, latents: Tensor, steps: int) -> Tensor:
        """The loop's initial latents (N, C, h, w) with the forced streams at z_T (checked first)."""
        self.check(latents, steps)
        return self.force(latents, steps)

    def __call__(self, end: StepEnd) -> Tensor:
        return self.force(end.latents, end.total - 1 - end.index)

    def force(self, latents: Tensor, position: int) -> Tensor:
        """Overwrite the forced streams with their stored z_position (a new tensor; the input is untouched)."""
        if not self.trajectories:
            return latents
        latents = latents.clone()
        for stream, trajectory in self.trajectories.items():
            latents[stream] = trajectory[position].reshape(latents.shape[1:]).to(latents)  # (C, h, w)
        return latents
