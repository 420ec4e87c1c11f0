"""What does a FaceID face prompt add to a generation? Four arms side by side on the bundled toyworld model.

Arms (each a full `generate` call, DDIM, CFG):
- "plain": no face prompt;
- "face, analysed": a FaceID prompt whose face was analysed beforehand (`FacePrompt(face=...)`): the
  projection, the extra cross-attention branch and the LoRA (loaded through peft for the call, deleted after);
- "face, no LoRA": the same without the file's LoRA (the branch alone);
- "face, from image": the whole path per call: insightface detection, alignment and ArcFace embedding, then
  as "face, analysed".
The FaceID file is random weights in the official layout for toyworld's UNet (rank-128 LoRA, as the official
SD1.5 files); the face models are the tests' tiny SCRFD/ArcFace-shaped ONNX pair (tests/face_models.py), so
"from image" shows the studio's per-call analysis overhead, not buffalo_l's own inference time. Arms
alternate every repeat; figures are medians, ratios against "plain".

Run from the repository root:  HF_HUB_OFFLINE=1 .venv/bin/python bench/faceid_overhead.py
Prints figures; not a test (nothing is asserted).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's packages and its tests' helpers

from pipelines.backbone import Backbone
from pipelines.control_loras import applied_unet_loras
from pipelines.faces import analyse_face, load_face_models
from pipelines.ip_adapter import image_prompt_control
from pipelines.ip_adapter_faceid import FacePrompt
from pipelines.ip_adapter_weights import load_adapter
from pipelines.text_to_image import generate
from tests import faceid_files
from tests.face_models import face_picture, write_face_models
from toyworld import load_toyworld_pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rank", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    faceid_files.RANK = args.rank
    backbone = Backbone.from_pipeline(load_toyworld_pipeline())
    backbone.pipe.set_progress_bar_config(disable=True)
    folder = Path(tempfile.mkdtemp())
    faces = load_face_models(write_face_models(folder / "faces"))
    with_lora = load_adapter(faceid_files.write_faceid(folder, backbone.unet, "faceid", seed=1))
    without = load_adapter(
        faceid_files.write_faceid(folder, backbone.unet, "faceid", seed=1, lora=False, name="n.safetensors")
    )
    image = face_picture([(64, 64)])
    face = analyse_face(faces, image)
    arms = {
        "plain": [],
        "face, analysed": [FacePrompt(None, with_lora, face=face)],
        "face, no LoRA": [FacePrompt(None, without, face=face)],
        "face, from image": [FacePrompt(image, with_lora, faces)],
    }

    def run(prompts) -> float:
        start = time.perf_counter()
        generate(
            backbone,
            "a red circle",
            num_inference_steps=args.steps,
            generator=torch.Generator().manual_seed(0),
            image_prompts=prompts,
        )
        return time.perf_counter() - start

    for prompts in arms.values():
        run(prompts)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(args.repeats):
        for name, prompts in arms.items():
            times[name].append(run(prompts))
    plain = statistics.median(times["plain"])
    print(
        f"toyworld, {args.steps} DDIM steps, CFG, LoRA rank {args.rank}, {args.threads} thread(s), {args.repeats} repeats"
    )
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:18s} {median * 1000:8.1f} ms  {median / plain:5.3f}x")
    # The LoRA's load and delete alone (once per call), apart from its cost inside the UNet calls.
    control = image_prompt_control(backbone, arms["face, analysed"])
    cycles = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        with applied_unet_loras(backbone.unet, [control]):
            pass
        cycles.append(time.perf_counter() - start)
    print(f"LoRA load + delete {statistics.median(cycles) * 1000:8.1f} ms per call")


if __name__ == "__main__":
    main()
