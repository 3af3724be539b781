"""Unpack uploaded code into a revision directory, refusing anything unsafe.

Zip entries are checked before a byte is written: no absolute paths, no `..`, no symlinks or special
files, bounded file count and total size (declared sizes and actual bytes both), bounded compression ratio
(zip bombs). Files land in a temporary directory that is renamed into place only when complete, then made
read-only.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from polyfn.deploy.errors import DeployError

MAX_RATIO = 200  # uncompressed / compressed, per entry


def safe_relpath(name: str) -> str:
    """A normalised relative POSIX path, or DeployError for anything that could escape the directory."""
    if "\x00" in name or "\\" in name:
        raise DeployError("unsafe_path", f"unsafe path in upload: {name!r}")
    p = PurePosixPath(name)
    if p.is_absolute() or any(part in ("..", "") for part in p.parts) or name.startswith("/"):
        raise DeployError("unsafe_path", f"unsafe path in upload: {name!r} (absolute or contains '..')")
    norm = str(p)
    if norm in (".", ""):
        raise DeployError("unsafe_path", f"unsafe path in upload: {name!r}")
    return norm


def files_from_zip(data: bytes, max_size: int, max_files: int) -> dict[str, bytes]:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as e:
        raise DeployError("invalid_zip", f"the code archive is not a valid zip file: {e}") from None
    infos = [i for i in zf.infolist() if not i.is_dir()]
    if len(infos) > max_files:
        raise DeployError("code_too_large", f"the archive has {len(infos)} files; the limit is {max_files}", 413)
    declared = 0
    for info in infos:
        safe_relpath(info.filename)
        mode = (info.external_attr >> 16) & 0o170000
        if mode and mode not in (stat.S_IFREG,):
            kind = "symlink" if mode == stat.S_IFLNK else "special file"
            raise DeployError("unsafe_path", f"{info.filename!r} is a {kind}: only regular files are accepted")
        declared += info.file_size
        if info.compress_size and info.file_size / max(info.compress_size, 1) > MAX_RATIO and info.file_size > 1 << 20:
            raise DeployError("invalid_zip", f"{info.filename!r} expands {info.file_size // max(info.compress_size, 1)}x: refusing a likely zip bomb")
    if declared > max_size:
        raise DeployError("code_too_large", f"the archive expands to {declared} bytes; the limit is {max_size}", 413)
    files: dict[str, bytes] = {}
    total = 0
    for info in infos:
        try:
            with zf.open(info) as f:
                content = f.read(max_size - total + 1)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError) as e:
            # A lying header, a bad CRC, an unsupported method or encryption: hostile or broken, never a 500.
            raise DeployError("invalid_zip", f"cannot read {info.filename!r} from the archive: {e}") from None
        total += len(content)
        if total > max_size:
            raise DeployError("code_too_large", f"the archive expands past the {max_size}-byte limit", 413)
        files[safe_relpath(info.filename)] = content
    return files


def check_files(files: dict[str, bytes], max_size: int, max_files: int) -> dict[str, bytes]:
    if not files:
        raise DeployError("invalid_request", "no code: upload a zip (`code`) or inline `files`")
    if len(files) > max_files:
        raise DeployError("code_too_large", f"{len(files)} files; the limit is {max_files}", 413)
    if sum(len(v) for v in files.values()) > max_size:
        raise DeployError("code_too_large", f"the code is larger than the {max_size}-byte limit", 413)
    return {safe_relpath(k): v for k, v in files.items()}


def digest(files: dict[str, bytes]) -> str:
    """A content hash independent of archive metadata: same files, same digest."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\x00" + hashlib.sha256(files[name]).digest())
    return h.hexdigest()


def materialise(files: dict[str, bytes], dest: Path) -> Path:
    """Write `files` under `dest` atomically (temp dir + rename); reuse `dest` if it already exists."""
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=dest.parent))
    try:
        for name, content in files.items():
            path = tmp / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            path.chmod(0o444)
        for root, dirs, _ in os.walk(tmp):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o555)
        tmp.chmod(0o555)
        try:
            tmp.rename(dest)
        except OSError:
            if not dest.exists():
                raise
            remove_tree(tmp)  # a concurrent deploy of the same code won the race
    except BaseException:
        remove_tree(tmp)
        raise
    return dest


def remove_tree(path: Path) -> None:
    """Remove a (read-only) code tree. Never through a link: a build's output may hold one to anywhere (a
    symlink to /root must not make /root 0755)."""
    if not path.exists() or path.is_symlink():
        if path.is_symlink():
            path.unlink()
        return
    for root, dirs, _files in os.walk(path):
        os.chmod(root, 0o755)
        for d in dirs:
            p = os.path.join(root, d)
            if not os.path.islink(p):
                os.chmod(p, 0o755)
    shutil.rmtree(path, ignore_errors=True)
