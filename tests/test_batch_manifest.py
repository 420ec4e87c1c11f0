"""The batch manifest: states move in single transactions, resume redoes what was caught running, two
processes never claim one item, and a SIGKILL at any moment leaves a consistent, resumable manifest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from studio.batch.manifest import MANIFEST_NAME, Manifest, ManifestError


def test_items_move_through_their_states_in_order(tmp_path):
    with Manifest.open(tmp_path, "spec-a") as manifest:
        assert manifest.add(["a", "b", "c"]) == 3
        assert manifest.add(["b", "d"]) == 1  # existing items keep their place and state
        assert manifest.claim("w0") == "a"
        manifest.mark_done("a", "out/a.png", "0" * 64)
        assert manifest.claim("w0") == "b"
        manifest.mark_failed("b", "b.png: the PNG file is truncated\nor corrupt")
        assert manifest.counts() == {"pending": 2, "running": 0, "done": 1, "failed": 1}
        assert [r.key for r in manifest.items()] == ["a", "b", "c", "d"]
        assert manifest.items("failed")[0].error == "b.png: the PNG file is truncated or corrupt"


def test_resume_redoes_running_items_and_failed_ones_only_when_asked(tmp_path):
    with Manifest.open(tmp_path, "spec") as manifest:
        manifest.add(["a", "b", "c"])
        manifest.claim("w0")
        manifest.claim("w0")
        manifest.mark_failed("b", "bad")
    with Manifest.open(tmp_path, "spec") as manifest:
        assert manifest.resume() == 1
        assert manifest.counts() == {"pending": 2, "running": 0, "done": 0, "failed": 1}
        assert manifest.resume(retry_failed=True) == 1
        assert manifest.counts()["pending"] == 3
        assert manifest.claim("w1") == "a" and manifest.items()[0].attempts == 2


def test_a_manifest_of_another_spec_is_refused_unless_started_over(tmp_path):
    with Manifest.open(tmp_path, "spec-a") as manifest:
        manifest.add(["a"])
    with pytest.raises(ManifestError, match="different spec.*--force-new"):
        Manifest.open(tmp_path, "spec-b")
    with Manifest.open(tmp_path, "spec-b", force_new=True) as manifest:
        assert manifest.counts()["pending"] == 0


def test_a_corrupt_manifest_is_one_line(tmp_path):
    (tmp_path / MANIFEST_NAME).write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ManifestError) as info:
        Manifest.open(tmp_path, "spec")
    assert "\n" not in str(info.value)


WORKER = textwrap.dedent(
    """
    import sys
    import time
    from pathlib import Path
    from studio.batch.manifest import Manifest

    folder, worker = Path(sys.argv[1]), sys.argv[2]
    while not (folder / "go").exists():  # start together, so the claims really interleave
        time.sleep(0.01)
    with Manifest.open(folder, "soak") as manifest:
        while (key := manifest.claim(worker)) is not None:
            out = folder / f"{key}.out"
            with open(folder / f".{key}.{worker}.tmp", "w") as handle:
                handle.write(key)
            Path(folder / f".{key}.{worker}.tmp").replace(out)
            time.sleep(0.005)
            manifest.mark_done(key, str(out), worker)
            with open(folder / f"claims-{worker}.txt", "a") as log:
                log.write(key + "\\n")
    """
)


def _workers(folder: Path, count: int) -> list[subprocess.Popen]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    (folder / "go").unlink(missing_ok=True)
    processes = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(folder), f"w{i}"], env=env) for i in range(count)
    ]
    time.sleep(1.0)  # let both import before the start signal
    (folder / "go").touch()
    return processes


@pytest.mark.slow
def test_two_processes_never_claim_the_same_item(tmp_path):
    with Manifest.open(tmp_path, "soak") as manifest:
        manifest.add([f"item{i:03d}" for i in range(120)])
    for process in _workers(tmp_path, 2):
        assert process.wait(timeout=120) == 0
    logs = [(tmp_path / f"claims-w{i}.txt").read_text().split() for i in range(2)]
    assert all(logs), "both workers should have claimed items"
    claimed = [key for log in logs for key in log]
    assert sorted(claimed) == [f"item{i:03d}" for i in range(120)]  # each exactly once
    with Manifest.open(tmp_path, "soak") as manifest:
        assert manifest.counts()["done"] == 120


@pytest.mark.slow
def test_sigkill_at_random_moments_leaves_a_resumable_manifest(tmp_path):
    with Manifest.open(tmp_path, "soak") as manifest:
        manifest.add([f"item{i:03d}" for i in range(150)])
    delays = [0.35, 0.5, 0.2, 0.6, 0.3]
    for delay in delays:
        with Manifest.open(tmp_path, "soak") as manifest:
            manifest.resume()
        workers = _workers(tmp_path, 2)
        time.sleep(delay)
        for process in workers:
            process.send_signal(signal.SIGKILL)
            process.wait()
    with Manifest.open(tmp_path, "soak") as manifest:
        manifest.resume()
    for process in _workers(tmp_path, 1):
        assert process.wait(timeout=120) == 0
    with Manifest.open(tmp_path, "soak") as manifest:
        records = manifest.items()
    assert all(r.state == "done" for r in records)
    for record in records:  # every done item's output exists and is complete
        assert Path(record.output).read_text() == record.key
