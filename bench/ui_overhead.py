"""How much does the web UI add to a generation? The UI's run path against the runner, side by side.

Arm "runner": `run_job` on a toyworld generate job, then `save_result` (what `studio generate` does).
Arm "ui": the same settings through `StudioUI.run_form`, the handler a Generate click calls: the form
becomes the job, files are checked, the job runs in the UI's worker thread with progress updates and a
latent preview every `PREVIEW_EVERY` steps, and the output is saved. Both arms share one model cache
(loaded before timing). Arms alternate every repeat so load from other processes hits both alike; the
ratio is of the medians. Goal: ratio <= 1.10. The browser's own rendering and gradio's transport are not
in either arm (they need a browser; tests/test_ui_browser.py drives one). Also printed: the preview's
cost per step (`latent_preview` on the final latents, timed alone).

Run from the repository root:  HF_HUB_OFFLINE=1 .venv/bin/python bench/ui_overhead.py
Prints figures; not a test (nothing is asserted).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from studio.cli_support import model_cache
from studio.jobs import Job
from studio.outputs import save_result
from studio.runner import run_job
from ui.app import StudioUI
from ui.preview import latent_preview
from ui.runs import PREVIEW_EVERY, SessionRuns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    work = Path(tempfile.mkdtemp(prefix="ui-bench-"))
    models = model_cache("cpu", "auto", "none")
    models.get("toyworld")  # loaded once, outside the timing
    ui = StudioUI(SessionRuns(models, work / "ui"), models=["toyworld"], work_dir=work / "work")
    (work / "runner").mkdir()  # an existing folder: each save takes a fresh default name in it
    settings = {"prompt": "a red star on the left", "seed": 1, "steps": args.steps, "guidance": 5.0}

    def runner_arm() -> float:
        started = time.perf_counter()
        result = run_job(Job(task="generate", model="toyworld", **settings), models)
        save_result(result, work / "runner")
        return time.perf_counter() - started

    def ui_arm() -> float:
        started = time.perf_counter()
        *_, final = ui.run_form("generate", {"model": "toyworld", **settings}, "bench")
        assert final.outcome == "done", final.status
        return time.perf_counter() - started

    runner_arm(), ui_arm()  # warm both paths (first-call allocations, imports)
    times: dict[str, list[float]] = {"runner": [], "ui": []}
    for repeat in range(args.repeats):
        arms = [("runner", runner_arm), ("ui", ui_arm)]
        for name, arm in arms if repeat % 2 == 0 else reversed(arms):
            times[name].append(arm())
    runner, ui_time = statistics.median(times["runner"]), statistics.median(times["ui"])
    print(f"toyworld generate, {args.steps} steps, {args.threads} thread(s), {args.repeats} repeats (medians)")
    print(f"runner {runner:.3f} s   ui {ui_time:.3f} s   ratio {ui_time / runner:.3f} (goal <= 1.10)")

    latents = torch.randn(1, 4, 8, 8)  # toyworld's 64 px images have 8x8 latents
    started = time.perf_counter()
    for _ in range(200):
        latent_preview(latents)
    per_preview = (time.perf_counter() - started) / 200
    print(
        f"preview {per_preview * 1000:.2f} ms each, one every {PREVIEW_EVERY} steps:"
        f" {per_preview / PREVIEW_EVERY * 1000:.2f} ms per step ({per_preview / PREVIEW_EVERY / (runner / args.steps):.1%}"
        " of a step)"
    )


if __name__ == "__main__":
    main()
