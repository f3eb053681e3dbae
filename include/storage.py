"""Storage by URI: one small API over fsspec for ``file://`` (and plain paths) and ``s3://``.

Every stage reads and writes through these functions, so the same code runs against the
local disk (the embedded default) and S3 (SageMaker backend, or moto in tests). Writes are
atomic: data goes to a temporary name first and is renamed (local) or uploaded in one PUT
(S3), so a failure never leaves a half-written file under its final name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO
from urllib.parse import urlparse

import fsspec


def normalize(uri: str | os.PathLike[str]) -> str:
    """Return ``uri`` as a URI: plain paths become absolute ``file://`` URIs."""
    text = os.fspath(uri)
    scheme = urlparse(text).scheme
    if scheme in ("", "file"):
        path = text[len("file://") :] if text.startswith("file://") else text
        return "file://" + str(Path(path).expanduser().resolve())
    return text.rstrip("/")


def scheme(uri: str) -> str:
    """The URI scheme (``file`` for plain paths)."""
    return urlparse(normalize(uri)).scheme


def is_local(uri: str) -> bool:
    """True when ``uri`` is on the local file system."""
    return scheme(uri) == "file"


def local_path(uri: str) -> Path:
    """The local path of a ``file://`` URI; raises for remote URIs."""
    uri = normalize(uri)
    if not is_local(uri):
        raise ValueError(f"{uri} is not a local file URI")
    return Path(uri[len("file://") :])


def join(base: str, *parts: str) -> str:
    """Join path parts onto a URI with ``/``."""
    out = normalize(base).rstrip("/")
    for part in parts:
        part = str(part).strip("/")
        if part:
            out = f"{out}/{part}"
    return out


def relative(uri: str, root: str) -> str:
    """The path of ``uri`` relative to ``root`` (both URIs or paths)."""
    u, r = normalize(uri), normalize(root).rstrip("/") + "/"
    if not u.startswith(r):
        raise ValueError(f"{u} is not under {r}")
    return u[len(r) :]


def filesystem(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec file system and the path inside it for ``uri``."""
    uri = normalize(uri)
    if uri.startswith("file://"):
        return _LOCAL_FS, uri[len("file://") :]
    fs, path = fsspec.core.url_to_fs(uri)
    return fs, path


_LOCAL_FS = fsspec.filesystem("file")


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    return bool(fs.exists(path))


def isdir(uri: str) -> bool:
    fs, path = filesystem(uri)
    return bool(fs.isdir(path))


def listdir(uri: str) -> list[str]:
    """URIs of the direct children of a folder, sorted."""
    fs, path = filesystem(uri)
    return sorted(_to_uri(uri, p) for p in fs.ls(path, detail=False))


def walk_files(uri: str) -> list[str]:
    """URIs of every file under a folder, recursively, sorted."""
    fs, path = filesystem(uri)
    return sorted(_to_uri(uri, p) for p in fs.find(path))


def _to_uri(like: str, fs_path: str) -> str:
    """Turn an fsspec path back into a URI of the same scheme as ``like``."""
    if is_local(like):
        return "file://" + fs_path
    return f"{scheme(like)}://{fs_path.lstrip('/')}"


def open_read(uri: str, mode: str = "rb") -> IO:
    """Open a file for reading (binary unless ``mode='r'``)."""
    fs, path = filesystem(uri)
    return fs.open(path, mode)


def read_bytes(uri: str) -> bytes:
    fs, path = filesystem(uri)
    return fs.cat_file(path)


def read_text(uri: str, encoding: str = "utf-8") -> str:
    return read_bytes(uri).decode(encoding)


def size(uri: str) -> int:
    fs, path = filesystem(uri)
    return int(fs.size(path))


@contextlib.contextmanager
def atomic_local_path(uri: str, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary local path; on success it becomes ``uri`` in one step.

    Local targets are renamed into place with :func:`os.replace` (same folder, so the
    rename is atomic); remote targets are uploaded in one request. On an exception the
    temporary file is removed and ``uri`` is left as it was.
    """
    uri = normalize(uri)
    if is_local(uri):
        target = local_path(uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix + ".tmp", dir=target.parent)
        os.close(fd)
    else:
        fd, tmp = tempfile.mkstemp(suffix=suffix)
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if is_local(uri):
            os.chmod(tmp_path, 0o644)
            os.replace(tmp_path, local_path(uri))
        else:
            fs, path = filesystem(uri)
            fs.put_file(str(tmp_path), path)
    finally:
        tmp_path.unlink(missing_ok=True)


def remove_stale_temporaries(uri: str) -> list[str]:
    """Delete what :func:`atomic_local_path` left in the local folder ``uri`` (a killed process cannot
    clean up); returns the names. Only for a folder no writer is using."""
    if not is_local(uri) or not local_path(uri).is_dir():
        return []
    stale = [p for p in local_path(uri).glob(".*.tmp") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return sorted(p.name for p in stale)


def write_bytes(uri: str, data: bytes) -> str:
    """Write ``data`` to ``uri`` atomically; returns the normalized URI."""
    with atomic_local_path(uri) as tmp:
        tmp.write_bytes(data)
    return normalize(uri)


def write_text(uri: str, text: str, encoding: str = "utf-8") -> str:
    return write_bytes(uri, text.encode(encoding))


def upload_file(local: str | os.PathLike[str], uri: str) -> str:
    """Copy a local file to ``uri`` atomically."""
    with atomic_local_path(uri) as tmp:
        shutil.copyfile(local, tmp)
    return normalize(uri)


@contextlib.contextmanager
def local_copy(uri: str) -> Iterator[Path]:
    """Yield a local path holding the file at ``uri`` (the file itself when local)."""
    uri = normalize(uri)
    if is_local(uri):
        yield local_path(uri)
        return
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / Path(urlparse(uri).path).name
        fs, path = filesystem(uri)
        fs.get_file(path, str(target))
        yield target


def move(source: str, target: str) -> str:
    """Move a file to ``target`` on the same file system (local: :func:`os.replace`; S3: one copy, then delete)."""
    source, target = normalize(source), normalize(target)
    if scheme(source) != scheme(target):
        raise ValueError(f"cannot move {source} to {target}: different file systems")
    if is_local(source):
        local_path(target).parent.mkdir(parents=True, exist_ok=True)
        os.replace(local_path(source), local_path(target))
    else:
        fs, path = filesystem(source)
        fs.mv(path, filesystem(target)[1])
    return target


def copy(source: str, target: str, link: bool = True) -> str:
    """Copy a file to ``target`` atomically; returns the target URI.

    Local to local is a hard link when ``link`` and both are on one device (instant, no space: safe
    because every write here replaces a file by rename, never rewrites it in place; files handed to
    other tools, which may edit them in place, pass ``link=False``), else a copy; S3 to
    S3 is one server-side CopyObject (s3fs: multipart above 5 GB); across file systems the bytes
    go through this machine.
    """
    source, target = normalize(source), normalize(target)
    if is_local(source) and is_local(target):
        src, dst = local_path(source), local_path(target)
        dst.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
        os.close(fd)
        os.unlink(tmp)
        try:
            if not (link and _hard_link(src, Path(tmp))):
                shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
        finally:
            Path(tmp).unlink(missing_ok=True)
    elif scheme(source) == scheme(target):
        fs, path = filesystem(source)
        fs.copy(path, filesystem(target)[1])
    else:
        with local_copy(source) as path:
            upload_file(path, target)
    return target


def _hard_link(source: Path, target: Path) -> bool:
    """Link ``target`` to ``source``; False on another device or a file system without hard links."""
    try:
        os.link(source, target)
    except OSError:
        return False
    return True


def makedirs(uri: str) -> None:
    """Create a folder (a no-op on object stores)."""
    if is_local(uri):
        local_path(uri).mkdir(parents=True, exist_ok=True)


def remove(uri: str, recursive: bool = False) -> None:
    """Delete a file or, with ``recursive``, a folder; missing targets are ignored."""
    fs, path = filesystem(uri)
    if fs.exists(path):
        fs.rm(path, recursive=recursive)


def copy_file(source: str, target: str) -> str:
    """Copy one file to ``target`` atomically, across file systems too (local, S3).

    Between two local paths on one disk the copy is a hard link (no bytes copied: a 43 MB model
    takes microseconds); the pipeline never changes a file in place (writes replace it), so the
    two names cannot drift apart.
    """
    if is_local(source) and is_local(target):
        src, dst = local_path(source), local_path(target)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.stat().st_dev == dst.parent.stat().st_dev:
            if dst.exists() and os.path.samefile(src, dst):  # linked already (rename would leave tmp behind)
                return normalize(target)
            tmp = dst.with_name(f".{dst.name}.{os.getpid()}.link.tmp")
            tmp.unlink(missing_ok=True)
            os.link(src, tmp)
            os.replace(tmp, dst)
            return normalize(target)
    with local_copy(source) as path:
        return upload_file(path, target)
