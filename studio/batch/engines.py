"""The engines that work through a batch: local (one process), accelerate (one process per device) and Ray.

Why existing engines and not our own pool: accelerate's launcher already starts one process per device
with the right environment, and Ray already schedules tasks on a cluster with resource requests. Each
engine only decides who runs which item; all of them run an item the same way (`studio.batch.worker`),
so they give the same bytes. The model is loaded once per worker (one `ModelCache` per process/actor).

- local: this process claims items from the manifest one by one.
- accelerate: the driver writes the pending keys, `accelerate launch` starts the processes, each takes
  its share with `PartialState.split_between_processes` and writes through the one manifest (SQLite
  serialises the short transactions); the driver follows the manifest for the progress bar.
- ray: one actor per worker (each with its resource request) renders item groups and returns the PNG
  bytes; the driver, which owns the manifest, writes them and marks the items done.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.batch.groups import render_group_retrying
from studio.batch.worker import Rendered, publish
from studio.errors import InputError, JobCancelledError, RunError

if TYPE_CHECKING:
    from studio.batch.items import Item
    from studio.batch.manifest import Manifest
    from studio.registry import Registry

ENGINES = ("local", "accelerate", "ray")
PLAN_NAME = ".batch-plan.json"  # the keys an accelerate launch splits between its processes


@dataclass(frozen=True)
class RunSettings:
    """How to run (not what): none of this is part of the spec's fingerprint, all engines give the same bytes."""

    engine: str = "local"
    workers: int = 2
    threads: int | None = None  # torch threads per worker; None: torch's default (local), cores/workers (others)
    device: str = "auto"
    precision: str = "auto"
    memory: str = "none"
    ray_address: str | None = None


Advance = Callable[[int], None]  # tell the progress bar how many items are settled now


def _models(settings: RunSettings) -> Any:
    from studio.cli_support import model_cache

    return model_cache(settings.device, settings.precision, settings.memory)


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def run_groups(
    groups: list[list[Item]],
    manifest: Manifest,
    registry: Registry,
    root: Path,
    models: Any,
    worker: str,
    advance: Advance | None = None,
) -> None:
    """Run each group that has pending items, publishing those (a group is always rendered whole, see groups)."""
    settled = 0
    for group in groups:
        started = {item.key for item in group if manifest.start(item.key, worker)}
        if not started:
            continue
        try:
            rendered = render_group_retrying(group, models, registry, root)
        except (KeyboardInterrupt, JobCancelledError):
            for key in started:
                manifest.release(key)  # abandoned cleanly: it runs again on resume
            raise
        by_key = {item.key: item for item in group}
        for result in rendered:
            if result.key in started:
                publish(by_key[result.key], result, manifest)
                settled += 1
        if advance is not None:
            advance(settled)


def run_local(
    groups: list[list[Item]],
    manifest: Manifest,
    registry: Registry,
    root: Path,
    settings: RunSettings,
    advance: Advance,
) -> None:
    """Run every pending group in this process; Ctrl-C puts the current group's items back."""
    _set_threads(settings.threads)
    run_groups(groups, manifest, registry, root, _models(settings), f"local-{os.getpid()}", advance)


def run_accelerate(spec_path: Path, manifest: Manifest, settings: RunSettings, advance: Advance) -> None:
    """Launch `settings.workers` processes with accelerate's launcher; each runs its split of the pending keys."""
    pending = [record.key for record in manifest.items("pending")]
    out = manifest.path.parent
    (out / PLAN_NAME).write_text(json.dumps(pending))
    threads = settings.threads or max(1, (os.cpu_count() or 1) // settings.workers)
    on_cpu = settings.device == "cpu" or not _cuda_available()
    processes = settings.workers if on_cpu else min(settings.workers, _cuda_devices())  # one per GPU at most
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        str(processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
    ]
    if on_cpu:
        command.append("--cpu")
    command += [
        "-m",
        "studio.batch.accelerate_worker",
        str(spec_path),
        "--threads",
        str(threads),
        "--device",
        settings.device,
        "--precision",
        settings.precision,
        "--memory",
        settings.memory,
    ]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([_code_root(), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "OMP_NUM_THREADS": str(threads),
    }
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while process.poll() is None:
            counts = manifest.counts()
            advance(counts["done"] + counts["failed"])
            time.sleep(0.5)
    except KeyboardInterrupt:
        process.terminate()
        process.wait()
        raise
    errors = process.stderr.read() if process.stderr else ""
    if process.returncode != 0:
        last = [line for line in errors.splitlines() if line.strip()][-1:] or ["no message"]
        raise RunError(f"accelerate launch failed (exit {process.returncode}): {last[0][:300]}")


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _cuda_devices() -> int:
    import torch

    return torch.cuda.device_count()


def _code_root() -> str:
    """The folder holding the `studio` package this process runs, so workers import the same code."""
    import studio

    return str(Path(studio.__file__).resolve().parent.parent)


class RayWorker:
    """One Ray actor: loads the model once and renders the item groups sent to it."""

    def __init__(self, settings: RunSettings, root: str) -> None:
        from studio.quiet import quiet_environment

        quiet_environment()
        _set_threads(settings.threads)
        self.settings = settings
        self.root = Path(root)
        self.models = _models(settings)

    def render(self, group: list[Item]) -> list[Rendered]:
        from studio.registry import default_registry

        return render_group_retrying(group, self.models, default_registry(), self.root)


def run_ray(groups: list[list[Item]], manifest: Manifest, root: Path, settings: RunSettings, advance: Advance) -> None:
    """One Ray task per item group on a pool of actors; the driver writes outputs and owns the manifest."""
    try:
        import ray
        from ray.util import ActorPool
    except ImportError:
        raise InputError("--engine ray needs Ray: pip install 'diffusion-studio[ray]'") from None
    threads = settings.threads or max(1, (os.cpu_count() or 1) // settings.workers)
    env = {
        "PYTHONPATH": _code_root(),
        "OMP_NUM_THREADS": str(threads),
        "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "0"),
    }
    options: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "runtime_env": {"env_vars": env},
        "configure_logging": False,
    }
    if settings.ray_address:
        options["address"] = settings.ray_address
    else:
        options["num_cpus"] = settings.workers * threads
    ray.init(**options)
    try:
        gpus = 1 if settings.device != "cpu" and _cuda_available() else 0  # each actor's resource request
        actor = ray.remote(num_cpus=threads, num_gpus=gpus)(RayWorker)
        pool = ActorPool(
            [
                actor.remote(RunSettings(**{**settings.__dict__, "threads": threads}), str(root))
                for _ in range(settings.workers)
            ]
        )
        started = {item.key for group in groups for item in group if manifest.start(item.key, "ray")}
        todo = [group for group in groups if any(item.key in started for item in group)]
        items = {item.key: item for group in todo for item in group}
        settled = 0
        for rendered_group in pool.map_unordered(lambda a, group: a.render.remote(group), todo):
            for rendered in rendered_group:
                if rendered.key in started:
                    publish(items[rendered.key], rendered, manifest)
                    settled += 1
            advance(settled)
    finally:
        ray.shutdown()
