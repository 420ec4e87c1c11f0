"""The demo's generate + invert round trip (studio/demo.py), on the tiny model, with 2 steps."""

from __future__ import annotations

import math

import pytest

from studio.demo import generate_and_invert
from studio.images import open_image
from studio.metadata import read_job
from studio.model_cache import ModelCache
from studio.reconstruction import pixel_error


@pytest.mark.slow
def test_demo_round_trip_writes_pngs_with_jobs(tiny_sd15_dir, tmp_path):
    result = generate_and_invert(ModelCache(), str(tiny_sd15_dir), tmp_path, steps=2)
    generated, reconstructed = read_job(result.generated).job, read_job(result.reconstructed).job
    assert generated.task == "generate" and reconstructed.task == "invert"
    assert reconstructed.image == result.generated.name  # embedded without its absolute folder
    expected = pixel_error(open_image(result.generated), open_image(result.reconstructed))
    assert math.isclose(result.metrics["mse"], expected["mse"], rel_tol=1e-9)
