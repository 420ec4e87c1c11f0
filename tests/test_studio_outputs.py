"""Outputs are never lost: no overwrite unless asked, never over an input, unique default names, normal modes,
one-line errors for paths that cannot be written, and temporaries of killed runs cleaned."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PIL import Image

from studio import atomic_write
from studio.errors import OutputError
from studio.jobs import Job
from studio.outputs import png_path, save_result


@dataclass
class Made:
    job: Job
    images: list[Image.Image] = field(default_factory=lambda: [Image.new("RGB", (8, 8), (200, 10, 10))])


def made(**changes) -> Made:
    return Made(Job(prompt="a red square", seed=7, **changes))


def test_an_existing_out_is_refused_and_left_untouched(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"earlier work")
    with pytest.raises(OutputError, match="already exists.*--overwrite"):
        save_result(made(), target)
    assert target.read_bytes() == b"earlier work"
    save_result(made(), target, overwrite=True)
    assert Image.open(target).size == (8, 8)


@pytest.mark.parametrize("name", ["adir", "x.png"])
def test_an_existing_folder_as_out_receives_a_default_named_file(tmp_path, name):
    folder = tmp_path / name
    folder.mkdir()
    assert png_path(folder) == folder
    (path,) = save_result(made(), folder)
    assert path.parent == folder and path.name.startswith("generate-") and path.name.endswith("-7.png")


def test_default_names_stay_unique_under_twenty_parallel_saves(tmp_path):
    results: list[Path] = []
    errors: list[BaseException] = []

    def save() -> None:
        try:
            results.extend(save_result(made(), tmp_path))
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=save) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(set(results)) == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in results)


def test_outputs_have_the_umask_mode_not_0600(tmp_path):
    (path,) = save_result(made(), tmp_path / "o.png")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_the_job_input_is_never_the_output(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (8, 8)).save("in.png")
    before = Path("in.png").read_bytes()
    with pytest.raises(OutputError, match="is an input of this job"):
        save_result(made(task="invert", image="in.png"), Path("in.png"), overwrite=True)
    assert Path("in.png").read_bytes() == before


def _file(path: Path) -> Path:
    path.write_text("x")
    return path


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda d: "", "--out is empty"),
        (lambda d: _file(d / "file") / "o.png", "is a file, not a folder"),
        (lambda d: d / ("n" * 300 + ".png"), "at most 255"),
        (lambda d: d / "o.jpg", "outputs are PNG"),
    ],
    ids=["empty", "parent-is-a-file", "name-too-long", "not-png"],
)
def test_paths_that_cannot_be_written_are_refused_before_any_work(tmp_path, make, fragment):
    with pytest.raises(OutputError, match=fragment) as info:
        png_path(make(tmp_path))
    assert "\n" not in str(info.value)


def test_a_254_character_name_is_written(tmp_path):
    target = tmp_path / ("n" * 250 + ".png")
    (path,) = save_result(made(), png_path(target))
    assert path == target and path.is_file()


@pytest.mark.parametrize("code, reason", [(errno.ENOSPC, "the disk is full"), (errno.EROFS, "read-only")])
def test_a_write_failure_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, code, reason):
    def fail(fd: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(atomic_write.os, "fsync", fail)
    with pytest.raises(OutputError, match=reason):
        save_result(made(), tmp_path / "o.png")
    assert list(tmp_path.iterdir()) == []


def test_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f"{atomic_write.TEMP_PREFIX}{int(dead.stdout)}-abc{atomic_write.TEMP_SUFFIX}"
    live = tmp_path / f"{atomic_write.TEMP_PREFIX}{os.getppid()}-def{atomic_write.TEMP_SUFFIX}"
    stale.write_bytes(b"half")
    live.write_bytes(b"writing")
    save_result(made(), tmp_path / "o.png")
    assert not stale.exists() and live.exists()
