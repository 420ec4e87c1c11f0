"""Shared test setup: no network, and tiny SD1.5/SDXL models saved once per session as local folders.

Why: tests must never touch the hub (HF_HUB_OFFLINE is read by huggingface_hub when it is first
imported, so it is set in `pytest_configure`, before any test module imports diffusers). Saving the tiny
pipelines to disk once lets tests exercise the real loading path (model references, safetensors-only
loading, the DDIM scheduler swap) in well under a second per load.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    # Caches the studio writes (the model-hash cache) go to a throwaway folder, never the user's ~/.cache.
    import tempfile

    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="studio-test-cache-")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    # The tiny models' ops are too small to split across threads: one thread is as fast alone and far
    # faster when the two cores are shared.
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_sd15_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SD1.5-shaped diffusers folder (safetensors weights, DDIM scheduler). Treat as read-only."""
    from pipelines.tiny_models import tiny_sd15_pipeline

    folder = tmp_path_factory.mktemp("models") / "tiny-sd15"
    tiny_sd15_pipeline().save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="session")
def tiny_sdxl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SDXL-shaped diffusers folder (safetensors weights, DDIM scheduler). Treat as read-only."""
    from pipelines.tiny_models import tiny_sdxl_pipeline

    folder = tmp_path_factory.mktemp("models") / "tiny-sdxl"
    tiny_sdxl_pipeline().save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="module")
def toyworld():
    """The bundled toyworld model as a Backbone, loaded once per test module (a module may restyle its
    scheduler; a fresh one per module keeps the gates independent of test order)."""
    from pipelines.backbone import Backbone
    from toyworld import load_toyworld_pipeline

    pipe = load_toyworld_pipeline()
    pipe.set_progress_bar_config(disable=True)
    return Backbone.from_pipeline(pipe)


@pytest.fixture
def quiet_cli_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI sets quiet-logging env defaults for its process; keep them from leaking into other tests."""
    for name in ("TRANSFORMERS_VERBOSITY", "DIFFUSERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS"):
        monkeypatch.setenv(name, "error" if "VERBOSITY" in name else "1")


@pytest.fixture
def runner():
    """A typer CliRunner for invoking the `studio` app in-process."""
    from typer.testing import CliRunner

    return CliRunner()
