"""Drive a batch: check the spec, open its manifest, run an engine, print the summary.

Resume is the same command again: done items are skipped, items caught running are redone, failed items
are retried only with `retry_failed`. A manifest made from another spec is refused unless `force_new`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from studio.batch.engines import RunSettings, run_accelerate, run_local, run_ray
from studio.batch.groups import plan_groups
from studio.batch.items import Item, plan_fingerprint, plan_items
from studio.batch.manifest import Manifest
from studio.batch.spec import SPEC_NAME, BatchSpec

if TYPE_CHECKING:
    from studio.registry import Registry


@dataclass(frozen=True)
class Summary:
    counts: dict[str, int]
    failures: list[tuple[str, str]] = field(default_factory=list)  # (key, error)
    ran: int = 0  # items settled by this run
    seconds: float = 0.0


@dataclass(frozen=True)
class Plan:
    """The spec's items (in order), its groups, and the folder outputs' job paths are relative to."""

    items: list[Item]
    groups: list[list[Item]]
    root: Path
    fingerprint: str  # what the manifest checks: the spec and the defaults its jobs were filled with


def prepare(spec: BatchSpec, registry: Registry) -> Plan:
    items = plan_items(spec, registry)
    return Plan(items, plan_groups(items, spec.group_size), Path(spec.out).parent, plan_fingerprint(spec, registry))


def write_spec(spec: BatchSpec) -> Path:
    """The resolved spec beside the outputs (`batch.json`): `studio batch out/batch.json` resumes it."""
    from studio.atomic_write import publish_bytes

    path = Path(spec.out) / SPEC_NAME
    text = spec.model_dump_json(indent=2, exclude_none=False) + "\n"
    if not path.is_file() or path.read_text() != text:
        publish_bytes(path, text.encode(), overwrite=True)
    return path


def run_batch(
    spec: BatchSpec,
    registry: Registry,
    settings: RunSettings,
    *,
    retry_failed: bool = False,
    force_new: bool = False,
    progress: object = None,
) -> Summary:
    """Run every pending item of `spec` with the chosen engine; returns the summary of the whole manifest."""
    from studio.atomic_write import remove_stale_temporaries
    from studio.batch.progress import batch_progress

    plan = prepare(spec, registry)  # every spec error before anything runs or is written
    out = Path(spec.out)
    with Manifest.open(out, plan.fingerprint, force_new=force_new) as manifest:
        spec_path = write_spec(spec)
        remove_stale_temporaries(out)  # what a killed run was writing; its item is redone below
        manifest.add(item.key for item in plan.items)
        manifest.resume(retry_failed=retry_failed)
        counts = manifest.counts()
        todo = counts["pending"]
        started = time.monotonic()
        with batch_progress(todo) as advance:
            if todo:
                if settings.engine == "ray":
                    run_ray(plan.groups, manifest, plan.root, settings, advance)
                elif settings.engine == "accelerate":
                    run_accelerate(spec_path, manifest, settings, advance)
                else:
                    run_local(plan.groups, manifest, registry, plan.root, settings, advance)
        final = manifest.counts()
        failures = [(r.key, r.error or "") for r in manifest.items("failed")]
        ran = todo - final["pending"] - final["running"]
        return Summary(final, failures, ran, time.monotonic() - started)


def status(folder: Path) -> Summary:
    with Manifest.open_existing(folder) as manifest:
        return Summary(manifest.counts(), [(r.key, r.error or "") for r in manifest.items("failed")])
