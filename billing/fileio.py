"""Writing files so that a crash leaves the old file or the new one, never half of one."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


# Local output folders copied to an object store (see billing.storage): local root -> Mirror.
_MIRRORS: dict[Path, object] = {}


def mirror_outputs(local_root: str | os.PathLike, url: str) -> None:
    """From now on (in this process), files written under `local_root` are also copied to `url`."""
    from billing.storage import Mirror

    root = Path(os.path.abspath(local_root))
    if root not in _MIRRORS:
        _MIRRORS[root] = Mirror(url, root)


def _mirror_of(path: str | os.PathLike):
    absolute = Path(os.path.abspath(path))
    for root, mirror in _MIRRORS.items():
        if absolute.is_relative_to(root):
            return mirror
    return None


def published(path: str | os.PathLike) -> None:
    """A file is in its final place: copy it to the object store, if its folder is mirrored."""
    mirror = _mirror_of(path)
    if mirror is not None:
        mirror.upload(path)


def remove_output(path: str | os.PathLike) -> None:
    """Remove an output file, here and in the object store."""
    Path(path).unlink(missing_ok=True)
    mirror = _mirror_of(path)
    if mirror is not None:
        mirror.remove(path)


def output_exists(path: str | os.PathLike) -> bool:
    """Whether an output exists; one that only the object store has is fetched into the local folder."""
    if Path(path).exists():
        return True
    mirror = _mirror_of(path)
    return mirror is not None and mirror.download(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write via a temp file in the same folder, fsync, os.replace, then fsync the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fchmod(out.fileno(), 0o644)  # mkstemp makes 0600
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)  # make the rename itself durable
    published(path)


class StagedFiles:
    """Files written to a private staging folder first, then moved into place together.

    Used to produce every document of a month before its numbers are
    committed: write with `path(final)`, then `publish()` after the commit
    (each file is moved with an atomic rename), or `discard()` if anything
    failed. Staging folders live in `<root>/.staging/`; one left behind by a
    process that died is removed by the next run.
    """

    def __init__(self, root: str | os.PathLike, label: str = "run"):
        self.root = Path(root)
        _remove_abandoned(self.root / STAGING)
        self.folder = Path(tempfile.mkdtemp(prefix=f"{label}-{os.getpid()}-", dir=_ensure(self.root / STAGING)))
        self.files: dict[Path, Path] = {}

    def path(self, final: str | os.PathLike) -> Path:
        """Where to write the file that will end up at `final` (a path under the root)."""
        final = Path(final)
        staged = self.folder / final.resolve().relative_to(self.root.resolve())
        staged.parent.mkdir(parents=True, exist_ok=True)
        self.files[final] = staged
        return staged

    def publish(self) -> list[Path]:
        """Move every staged file into place; returns the final paths."""
        folders = set()
        moved = []
        for final, staged in self.files.items():
            if staged.exists():
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged, final)
                folders.add(final.parent)
                moved.append(final)
        for folder in folders:
            _fsync_dir(folder)
        for final in moved:
            published(final)
        self.discard()
        return [f for f in self.files]

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


STAGING = ".staging"


def _ensure(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _remove_abandoned(staging: Path) -> None:
    """Remove staging folders whose process is gone (a crash or a kill before publishing)."""
    if not staging.is_dir():
        return
    for folder in staging.iterdir():
        try:
            pid = int(folder.name.split("-")[-2])
        except (ValueError, IndexError):
            continue
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
