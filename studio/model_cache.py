"""A small cache of loaded pipelines, owned by whoever runs jobs (CLI process, UI server, batch worker).

Why: loading a model costs seconds to minutes, so consecutive jobs on the same model must reuse it; but
a module-level cache would be hidden global state shared by tests and threads. So the cache is an object
the caller creates and passes to `run_job`. It keeps at most `capacity` pipelines (default one: two SDXL
pipelines rarely fit on a GPU together) and frees the oldest when a new one is loaded.
"""

from __future__ import annotations

import gc
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

from studio.devices import DevicePolicy
from studio.loading import load_pipeline
from studio.model_refs import ModelRef, resolve_model_ref

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline


class ModelCache:
    """Loads pipelines on first use and keeps the most recent `capacity` of them."""

    def __init__(
        self,
        policy: DevicePolicy | None = None,
        *,
        capacity: int = 1,
        single_file_config: str | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.policy = policy or DevicePolicy()
        self.capacity = capacity
        self.single_file_config = single_file_config
        self._pipes: OrderedDict[tuple[str, str], DiffusionPipeline] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0  # how many times a pipeline was actually loaded (observable by tests and `doctor`)

    def resolve(self, reference: str) -> ModelRef:
        return resolve_model_ref(reference)

    def get(self, reference: str | ModelRef) -> DiffusionPipeline:
        """The pipeline for `reference`, loading it (and evicting the oldest) if it is not cached."""
        ref = reference if isinstance(reference, ModelRef) else self.resolve(reference)
        key = (ref.kind.value, ref.location)
        with self._lock:
            if key in self._pipes:
                self._pipes.move_to_end(key)
                return self._pipes[key]
            while len(self._pipes) >= self.capacity:
                self._evict_oldest()
            pipe = load_pipeline(ref, self.policy, single_file_config=self.single_file_config)
            self.loads += 1
            self._pipes[key] = pipe
            return pipe

    def clear(self) -> None:
        with self._lock:
            while self._pipes:
                self._evict_oldest()

    def __len__(self) -> int:
        return len(self._pipes)

    def _evict_oldest(self) -> None:
        self._pipes.popitem(last=False)
        gc.collect()
        if self.policy.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()
