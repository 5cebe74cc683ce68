"""Temporary files and folders that name the process that made them, so a later run can remove those of runs that
were killed (SIGKILL, out of memory, a lost machine) without touching those of runs still going.

Names look like `<prefix><pid>-<random><suffix>`: `clean_stale` removes every sibling with that prefix whose pid is
not a running process. Scratch folders (partitions, downloaded releases) stay private to the user (mode 0700);
published outputs get the modes the umask gives (`publish_mode`).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """True when a process with this id runs (or exists under another user)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(parent: str | os.PathLike, prefix: str) -> list[Path]:
    """Remove `<parent>/<prefix><pid>-*` files and folders whose process is gone; returns what was removed."""
    parent = Path(parent)
    if not parent.is_dir():
        return []
    pattern = re.compile(re.escape(prefix) + r"(\d+)-")
    removed = []
    for path in parent.glob(f"{glob_escape(prefix)}*"):
        match = pattern.match(path.name)
        if match is None or pid_alive(int(match.group(1))):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def glob_escape(text: str) -> str:
    """`text` with glob wildcards escaped."""
    return re.sub(r"([*?\[])", r"[\1]", text)


def tagged_prefix(prefix: str) -> str:
    """`prefix` + this process's id + `-`: the start of every scratch name this process makes."""
    return f"{prefix}{os.getpid()}-"


def make_temp_file(directory: str | os.PathLike, prefix: str, suffix: str = ".tmp") -> Path:
    """An empty temp file `<directory>/<prefix><pid>-<random><suffix>`, after removing stale ones of dead runs."""
    clean_stale(directory, prefix)
    fd, name = tempfile.mkstemp(dir=directory, prefix=tagged_prefix(prefix), suffix=suffix)
    os.close(fd)
    return Path(name)


def make_temp_dir(directory: str | os.PathLike | None, prefix: str) -> Path:
    """A private temp folder `<directory>/<prefix><pid>-<random>` (the system temp dir when None), after removing
    stale ones of dead runs."""
    directory = Path(directory) if directory else Path(tempfile.gettempdir())
    directory.mkdir(parents=True, exist_ok=True)
    clean_stale(directory, prefix)
    return Path(tempfile.mkdtemp(dir=directory, prefix=tagged_prefix(prefix)))


@contextmanager
def scratch_dir(directory: str | os.PathLike | None, prefix: str) -> Iterator[Path]:
    """A private temp folder for the duration of the block (see `make_temp_dir`), removed when it ends."""
    path = make_temp_dir(directory, prefix)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def umask() -> int:
    """The process umask (read without changing it for longer than two calls)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def publish_mode(path: str | os.PathLike) -> None:
    """Give a finished temp file (0600 from mkstemp) or folder (0700) the mode a normally created one would have
    under the umask (files 0666, folders 0777, minus the umask; files and folders inside a folder too)."""
    mask = umask()
    path = Path(path)
    if path.is_dir():
        os.chmod(path, 0o777 & ~mask)
        for inner in path.rglob("*"):
            os.chmod(inner, (0o777 if inner.is_dir() else 0o666) & ~mask)
    else:
        os.chmod(path, 0o666 & ~mask)
