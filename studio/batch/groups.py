"""Item groups: items that share their settings, run as one UNet batch where the method supports it.

Why fixed groups: a batched UNet call rounds differently from single ones (on CPU a few pixel values
differ by one level), so an item's bytes depend on which items shared its batch. Groups are therefore
cut once from the planned item list (consecutive items with equal settings, `group_size` at most) and a
group is always rendered whole, also on resume, where only its unfinished items are published. So a
batch gives the same bytes however often it is killed and on every engine. With `group_size = 1` (the
default) every item runs alone and equals a single `studio` run of its job.

Batched tasks: `generate` (a prompt list): its pipeline takes one prompt and one seeded generator per
row, so image i draws exactly the noise of a single run with its seed. Other tasks run their group's
items one after another.
"""

from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.batch.worker import OutOfMemory, Rendered, png_text, render

if TYPE_CHECKING:
    from studio.batch.items import Item
    from studio.model_cache import ModelCache
    from studio.registry import Registry

BATCHED_TASKS = ("generate",)
_PER_ROW = ("prompt", "seed")  # what may differ between the items of one UNet batch


def settings_of(item: Item) -> str:
    return json.dumps({k: v for k, v in item.job.items() if k not in _PER_ROW}, sort_keys=True)


def plan_groups(items: list[Item], group_size: int) -> list[list[Item]]:
    """Consecutive items with equal settings, at most `group_size` each (one item each for unbatched tasks)."""
    groups: list[list[Item]] = []
    for item in items:
        last = groups[-1] if groups else None
        if (
            last is not None
            and len(last) < group_size
            and item.job["task"] in BATCHED_TASKS
            and item.problem is None
            and last[0].problem is None
            and settings_of(last[0]) == settings_of(item)
        ):
            last.append(item)
        else:
            groups.append([item])
    return groups


def render_group(group: list[Item], models: ModelCache, registry: Registry, root: Path) -> list[Rendered]:
    """Render a group: one UNet batch for a batched task, else item by item. Raises `OutOfMemory`."""
    if len(group) == 1 or group[0].job["task"] not in BATCHED_TASKS:
        return [render(item, models, registry, root) for item in group]
    try:
        return _generate_batch(group, models, registry, root)
    except OutOfMemory:
        raise
    except Exception as exc:
        if "out of memory" in str(exc).lower():
            raise OutOfMemory(str(exc)) from exc
        return [render(item, models, registry, root) for item in group]


def render_group_retrying(group: list[Item], models: ModelCache, registry: Registry, root: Path) -> list[Rendered]:
    """On out-of-memory, free memory and run the group again once, in halves (a one-item group: again)."""
    try:
        return render_group(group, models, registry, root)
    except OutOfMemory:
        free_memory()
    halves = [group[: len(group) // 2], group[len(group) // 2 :]] if len(group) > 1 else [group]
    rendered: list[Rendered] = []
    for half in halves:
        try:
            rendered += render_group(half, models, registry, root)
        except OutOfMemory as exc:
            size = len(half)
            rendered += [Rendered(i.key, error=f"{i.key}: {exc} (retried once at batch size {size})") for i in half]
    return rendered


def _generate_batch(group: list[Item], models: ModelCache, registry: Registry, root: Path) -> list[Rendered]:
    """The group's prompts in one `generate` call, one seeded generator per row (`pipelines.seeds`)."""
    import torch

    from pipelines.backbone import Backbone
    from pipelines.seeds import seeded_generators
    from pipelines.text_to_image import generate
    from studio.declarations import TaskRun
    from studio.images import encode_png
    from studio.input_hashes import checked_input_hashes
    from studio.jobs import Job
    from studio.tasks.common import sampling, size_of

    jobs = [Job.from_dict(item.job, registry) for item in group]
    first = jobs[0]
    options = registry.task_options(first)
    hashes = checked_input_hashes(first)
    backbone = Backbone.from_pipeline(models.get(first.model))
    controls: list[Any] = []
    for index, spec in enumerate(first.controls):
        controls += registry.control(spec.kind).build(registry.control_options(spec, index), first, backbone)
    height, width = size_of(first, backbone, rows=2 * len(jobs))
    run = TaskRun(first, options, backbone, controls, lambda event: None, None)
    kwargs = sampling(run, first.seed or 0, height, width)
    kwargs["generator"] = seeded_generators([job.seed or 0 for job in jobs])
    try:
        output = generate(backbone, [job.prompt for job in jobs], **kwargs)
    except torch.OutOfMemoryError as exc:
        raise OutOfMemory(f"out of memory running a batch of {len(jobs)}") from exc
    rendered = []
    for item, job, image in zip(group, jobs, output.images, strict=True):
        done = job.replace(seed=job.seed, width=width, height=height, inputs=hashes)
        rendered.append(Rendered(item.key, (encode_png(image, png_text(done, root)),)))
    return rendered


def free_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass
