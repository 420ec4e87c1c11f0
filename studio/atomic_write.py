"""Publish a file atomically, never over an existing one unless asked, with the user's normal file mode.

Why: an output is either absent or complete. The bytes go to a temporary file in the target folder,
are fsynced, and only then appear under their name. Without `overwrite`, the name is taken with a hard
link, which fails if the name exists, so two runs racing for one name cannot both win and neither
loses the other's file. Temporary names carry the writer's process id, so the temporaries a killed run
left behind are recognised (their process is gone) and removed by the next write into that folder;
their `.studio-` prefix and `.tmp` suffix mean nothing mistakes them for outputs. Files are created
with mode 0o666 and the process umask applies, as for any other program's output (0644 by default).

Every OS failure becomes one `OutputError` line that says what could not be written and why.
"""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path

from studio.errors import OutputError

TEMP_PREFIX = ".studio-"
TEMP_SUFFIX = ".tmp"
MAX_NAME_BYTES = 255  # NAME_MAX on Linux, macOS and Windows filesystems

_REASONS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "the file system is read-only",
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.ENAMETOOLONG: "the name is too long",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder",
}


def output_error(path: Path, exc: OSError) -> OutputError:
    """One line for an OS error while writing `path`."""
    reason = _REASONS.get(exc.errno or 0, exc.strerror or type(exc).__name__)
    return OutputError(f"cannot write {path}: {reason}")


def check_writable_target(path: Path) -> None:
    """Refuse, before any work, a target that can never be written: raises `OutputError` with the reason."""
    if not path.name or path.name in (".", ".."):
        raise OutputError(f"cannot write {str(path)!r}: an output needs a file name")
    check_name_length(path)
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder")
    folder = _nearest_existing(path.parent)
    if not folder.is_dir():
        raise OutputError(f"cannot write {path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {path}: the folder {folder} is not writable")


def check_name_length(path: Path) -> None:
    """Refuse a path with a component longer than the file system allows (before `stat` fails on it)."""
    for part in path.parts:
        size = len(os.fsencode(part))
        if size > MAX_NAME_BYTES:
            raise OutputError(
                f"cannot write {part[:40]}...: the name is {size} bytes; at most {MAX_NAME_BYTES} are allowed"
            )


def _nearest_existing(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete temporaries in `folder` whose writing process has exited; returns what was removed."""
    removed = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not (name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)):
            continue
        pid_text = name[len(TEMP_PREFIX) :].split("-", 1)[0]
        if pid_text.isdigit() and not _alive(int(pid_text)):
            try:
                entry.unlink()
                removed.append(entry)
            except OSError:
                continue  # another writer removed it first, or it is not ours to remove
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def publish_bytes(path: str | os.PathLike[str], data: bytes, *, overwrite: bool = False) -> Path:
    """Write `data` to `path` atomically; without `overwrite`, an existing `path` is left untouched.

    An existing target raises `OutputExistsError`, so a caller that picks names itself can try the next.
    """
    target = Path(path)
    check_writable_target(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(target, exc) from exc
    remove_stale_temporaries(target.parent)
    temporary = target.parent / f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(6)}{TEMP_SUFFIX}"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(temporary, target)
        else:
            _link_new(temporary, target)
        _sync_folder(target.parent)
    except FileExistsError as exc:
        raise OutputExistsError(f"{target} already exists; choose another --out, or pass --overwrite") from exc
    except OSError as exc:
        raise output_error(target, exc) from exc
    finally:
        temporary.unlink(missing_ok=True)
    return target


def _link_new(temporary: Path, target: Path) -> None:
    """Give `temporary`'s inode the name `target`, failing with FileExistsError if the name is taken."""
    try:
        os.link(temporary, target)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        # A file system without hard links: claim the name exclusively, then move the bytes over it.
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        os.replace(temporary, target)


def _sync_folder(folder: Path) -> None:
    """Make the new name durable (a crash after return still finds the file)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems do not sync folders; the file itself is synced
    finally:
        os.close(fd)


class OutputExistsError(OutputError):
    """The output name is taken and overwriting was not asked for."""
