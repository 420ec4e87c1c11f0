"""The content of a job's input files, recorded when it runs and checked when it runs again.

Why: a job names its inputs by path, and a path means another file in another folder (every project
has its `base.png`). The runner records a SHA-256 prefix of each input in the job it embeds in the
output; re-running that job refuses, with one line, an input whose content is not the one it was made
with, instead of silently making a different picture.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.errors import InputError

if TYPE_CHECKING:
    from studio.jobs import Job

HASH_DIGITS = 16  # 64 bits: enough to tell two files apart, short enough for the metadata


def content_hash(path: str) -> str:
    """A file's bytes; a folder's files, each by its path inside the folder and its bytes (in name order)."""
    digest = hashlib.sha256()
    root = Path(path)
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    for file in files:
        if root.is_dir():
            digest.update(file.relative_to(root).as_posix().encode() + b"\0")
        with file.open("rb") as stream:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()[:HASH_DIGITS]


def input_paths(job: Job) -> list[str]:
    """Every file the job reads: its image and each option field declared a file path, once each."""
    data: dict[str, Any] = job.to_dict()
    paths = [job.image] if job.image else []
    for where, _ in job.registry.file_fields(job):
        holder: Any = data
        for key in where:
            holder = holder[key]
        if isinstance(holder, str) and holder:
            paths.append(holder)
    return list(dict.fromkeys(paths))


def checked_input_hashes(job: Job) -> dict[str, str]:
    """The hash of every input, after checking each against the hash the job recorded for it (if any)."""
    hashes = {}
    for path in input_paths(job):
        try:
            found = content_hash(path)
        except OSError as exc:
            raise InputError(f"{path}: cannot read this input of the job ({exc.strerror or exc})") from exc
        recorded = job.inputs.get(path)
        if recorded is not None and recorded != found:
            raise InputError(
                f"{path}: not the file this job was made with (content hash {found}, the job recorded {recorded});"
                " run it where its inputs are, or remove 'inputs' from the job to accept these files"
            )
        hashes[path] = found
    return hashes
