"""Outputs in an object store (s3://, gs://, az://), through fsspec.

A deployment on a work pool runs on machines that vanish, so `--out` (or
`out_dir` in the configuration) may name an object-store prefix. Every
output is still produced in a local folder first (a cache named after the
URL), written atomically as always, and then copied to the store as one
whole object: a reader of the store sees the previous object or the new
one, never half of one (an S3, GCS or Azure upload becomes visible only
when complete). A file the run needs that is not in the local cache (a
finalized PDF, a snapshot) is looked up in, and read from, the store.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from billing.errors import InputError

# What each URL scheme needs installed (fsspec implements none of these itself).
PROTOCOL_PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs",
                     "abfss": "adlfs"}


def is_url(location: str | os.PathLike | None) -> bool:
    return isinstance(location, str) and "://" in location and not location.startswith("file://")


def cache_dir(url: str) -> Path:
    """The local folder that mirrors an object-store output location."""
    base = os.environ.get("BILLING_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "hub-billing")
    return Path(base) / hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16]


class Mirror:
    """A local folder whose files are copied to an object-store prefix."""

    def __init__(self, url: str, local_root: Path):
        import fsspec

        protocol = url.split("://", 1)[0].lower()
        try:
            self.fs, self.base = fsspec.core.url_to_fs(url)
        except ImportError:
            raise InputError(f"--out {url}: writing to {protocol}:// needs the {PROTOCOL_PACKAGES.get(protocol, protocol)!r} "
                             "package installed") from None
        except (ValueError, KeyError) as err:
            raise InputError(f"--out {url}: not an object-store location fsspec knows ({err})") from None
        self.url = url.rstrip("/")
        self.base = self.base.rstrip("/")
        self.local_root = Path(os.path.abspath(local_root))

    def key(self, path: str | os.PathLike) -> str | None:
        """The object key of a local path under the root, or None if it is not under it."""
        try:
            rel = Path(os.path.abspath(path)).relative_to(self.local_root)
        except ValueError:
            return None
        if rel.parts and rel.parts[0].startswith("."):   # staging folders, lock files: this machine's own
            return None
        return f"{self.base}/{rel.as_posix()}"

    def upload(self, path: str | os.PathLike) -> None:
        key = self.key(path)
        if key is not None:
            self.fs.put_file(str(path), key)

    def remove(self, path: str | os.PathLike) -> None:
        key = self.key(path)
        if key is not None and self.fs.exists(key):
            self.fs.rm_file(key)

    def download(self, path: str | os.PathLike) -> bool:
        """Fetch the object of a local path that is missing; False if the store has none either."""
        key = self.key(path)
        if key is None or not self.fs.exists(key):
            return False
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tmp = f"{path}.download"
        self.fs.get_file(key, tmp)
        os.replace(tmp, path)
        return True

    def check_writable(self) -> None:
        probe = f"{self.base}/.billing-probe-{os.getpid()}"
        try:
            self.fs.pipe_file(probe, b"probe")
            self.fs.rm_file(probe)
        except Exception as err:  # noqa: BLE001 - any failure: say what and where, never a traceback
            raise InputError(f"--out {self.url}: cannot write there ({type(err).__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else ''}); check the credentials and the "
                             "bucket's permissions") from None
