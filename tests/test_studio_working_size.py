"""Working size: phone photos scaled to the model's area, and sizes that cannot fit refused with an estimate."""

from __future__ import annotations

import pytest

from studio.errors import JobSpecError
from studio.working_size import ModelShape, check_fits, estimate_peak_bytes, fit_to_area

SD15_UNET = {"down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"], "attention_head_dim": 8}
SD15_VAE = {"block_out_channels": [128, 256, 512, 512]}


def test_a_phone_photo_is_brought_to_the_working_area_with_its_aspect():
    width, height = fit_to_area(4032, 3024, 512 * 512, 8)
    assert width * height <= 512 * 512 and width % 8 == 0 and height % 8 == 0
    assert abs(width / height - 4032 / 3024) < 0.02


def test_a_small_image_is_never_scaled_up():
    assert fit_to_area(200, 120, 512 * 512, 8) == (200, 120)


def test_the_shape_is_read_from_the_configs():
    shape = ModelShape.of(SD15_UNET, SD15_VAE)
    assert shape == ModelShape(8, 8, 128, True)


def test_the_estimate_grows_with_the_square_of_the_tokens_unless_fused():
    shape = ModelShape.of(SD15_UNET, SD15_VAE)
    small = estimate_peak_bytes(shape, 512, 512, rows=2, dtype_bytes=4, fused_attention=False)
    large = estimate_peak_bytes(shape, 1024, 1024, rows=2, dtype_bytes=4, fused_attention=False)
    assert large == 16 * small  # 4x the tokens: 16x the scores
    fused = estimate_peak_bytes(shape, 1024, 1024, rows=2, dtype_bytes=4, fused_attention=True)
    assert fused == 4 * 128 * 1024 * 1024 * 4  # only the VAE's full-size activations remain


def test_an_8192_square_is_refused_with_its_estimate():
    shape = ModelShape.of(SD15_UNET, SD15_VAE)
    estimate = estimate_peak_bytes(shape, 8192, 8192, rows=2, dtype_bytes=4, fused_attention=False)
    with pytest.raises(JobSpecError, match=r"8192x8192 needs about [\d,.]+ GiB .* is free") as info:
        check_fits(estimate, 24 * 1024**3, 8192, 8192)
    assert "\n" not in str(info.value)
    check_fits(estimate_peak_bytes(shape, 512, 512, rows=2, dtype_bytes=4, fused_attention=False), 24 * 1024**3, 512, 512)
