"""kill -9 at random moments, resumed each time: every item done once, no output missing, extra, truncated
or different from an uninterrupted run of the same spec (byte for byte)."""

from __future__ import annotations

import pytest

from tests.batch_soak import soak


@pytest.mark.slow
def test_a_batch_killed_with_sigkill_and_resumed_equals_an_uninterrupted_run(tmp_path):
    report = soak(tmp_path, items=6, kills=3, steps=1, seed=1)
    assert report.kills >= 1  # the batch really was killed mid-run
    assert (report.lost, report.duplicated, report.corrupt) == (0, 0, 0), report
