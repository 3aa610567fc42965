"""Small C sources that aikit compiles once with the system C compiler (the debugger's line hook,
the process confinement launcher), cached in the user cache directory by the hash of their source."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path


def cache_dir() -> Path:
    """Where built artifacts are kept: ``$XDG_CACHE_HOME/aikit`` (``~/.cache/aikit``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "aikit"


def build_c(source: bytes, stem: str, *, suffix: str = "", flags: tuple[str, ...] = ("-O2",),
            salt: bytes = b"") -> Path:
    """``source`` compiled to ``cache_dir()/STEM-HASH{suffix}`` unless already there; the hash
    covers the source, ``flags`` and ``salt`` (say, the library it links against). Raises
    RuntimeError when no C compiler is on PATH or it fails."""
    key = hashlib.sha256(source + b"\0" + " ".join(flags).encode() + b"\0" + salt).hexdigest()[:16]
    target = cache_dir() / f"{stem}-{key}{suffix}"
    if target.exists():
        return target
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not compiler:
        raise RuntimeError("no C compiler (cc, gcc or clang) on PATH")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / f"{stem}.c"
        src.write_bytes(source)
        built = target.parent / f".{target.name}.{os.getpid()}.tmp"  # same filesystem: replace is atomic
        proc = subprocess.run([compiler, *flags, "-o", str(built), str(src)], capture_output=True, text=True,
                              timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{compiler} failed: {proc.stderr.strip()[:500]}")
        os.replace(built, target)  # atomic: concurrent processes may build at the same time
    return target
