"""The toyworld demo: a small grid of prompts, rendered, scored by the detector.

`run_demo(out_dir, render)` writes one PNG per prompt and a grid, and returns the prompts, images and
the measured attribute accuracy. `make demo` runs it as `python -m toyworld.demo OUT_DIR`, after the
studio's own generate-and-invert demo.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from .quality import QualityReport, Render, evaluate

DEMO_PROMPTS: tuple[str, ...] = (
    "a red circle in the center, gray background",
    "a blue striped square on the left, white background",
    "a large yellow star in the center, black background",
    "a green dotted triangle at the top right, gray background",
    "a purple checkered ring at the bottom, beige background",
    "a small orange cross at the top left, gray background",
    "a pink circle on the left and a cyan square on the right, gray background",
    "a red star at the top left and a blue ring at the bottom right, white background",
)
DEMO_SEED = 7


@dataclass
class DemoSummary:
    prompts: list[str]
    seeds: list[int]
    images: list[Image.Image]
    paths: list[Path]
    grid_path: Path
    accuracy: dict[str, float] = field(default_factory=dict)


def grid(images: list[Image.Image], cols: int = 4, scale: int = 2) -> Image.Image:
    w, h = images[0].size
    rows = (len(images) + cols - 1) // cols
    out = Image.new("RGB", (cols * w * scale, rows * h * scale), (255, 255, 255))
    for i, im in enumerate(images):
        out.paste(im.resize((w * scale, h * scale), Image.NEAREST), ((i % cols) * w * scale, (i // cols) * h * scale))
    return out


def run_demo(out_dir: Path, render: Render, prompts: tuple[str, ...] = DEMO_PROMPTS,
             seed: int = DEMO_SEED) -> DemoSummary:
    """Render `prompts` (seed, seed+1, ...), write PNGs and a grid to out_dir, return the accuracy."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seeds = [seed + i for i in range(len(prompts))]
    report: QualityReport = evaluate(render, prompts, seeds, name="demo", keep_images=True)
    paths = []
    for i, image in enumerate(report.images):
        path = out_dir / f"toyworld_{i:02d}.png"
        image.save(path)
        paths.append(path)
    grid_path = out_dir / "toyworld_grid.png"
    grid(report.images).save(grid_path)
    return DemoSummary(list(prompts), seeds, report.images, paths, grid_path, report.accuracy())


def main(argv: list[str] | None = None) -> int:
    """`python -m toyworld.demo [OUT_DIR]`: the demo grid on the bundled model, offline, 25 DDIM steps.

    Each image is rendered alone through the studio's own generation loop (`pipelines.text_to_image`), so the
    grid shows what `studio generate --seed S` makes for the same prompt.
    """
    import os
    import sys

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    from . import load_toyworld_pipeline
    from .render import PipelineRenderer

    diffusers_logging.disable_progress_bar()  # the demo prints its own two lines
    transformers_logging.disable_progress_bar()

    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else Path("outputs/demo/toyworld")
    renderer = PipelineRenderer(load_toyworld_pipeline(), engine="studio")
    summary = run_demo(out, lambda prompt, seed: renderer(prompt, seed))
    print(f"toyworld grid: {summary.grid_path}")
    print("attribute accuracy: " + ", ".join(f"{k} {v:.0%}" for k, v in summary.accuracy.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
