"""One artifact protocol for every model: a release is a folder that describes itself.

Writing: `staged_release(release_dir)` yields a fresh staging folder beside the destination; everything goes in
there (model, preprocessing, config, metadata, fitted insights, monitoring profile, model card), and only a clean
exit publishes it, with one rename onto `release_dir`. A crash or a kill at any point before that leaves the
previous release untouched; leftovers of killed runs are cleaned by the next publish.
Reading: `fetch_release` turns a folder or an MLflow URI (`runs:/<id>/release`, `models:/<name>@<alias>`,
`models:/<name>/<version>`) into a local folder holding the files a loader needs.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from churnsense.core.scratch import make_temp_dir, publish_mode

MLFLOW_SCHEMES = ("runs:/", "models:/", "mlflow-artifacts:/")
STAGING, PREVIOUS = "staging", "previous"


def _siblings(release_dir: Path, kind: str) -> list[Path]:
    return sorted(release_dir.parent.glob(f".{release_dir.name}.{kind}-*"))


def clean_leftovers(release_dir: str | os.PathLike) -> None:
    """Remove staging folders of earlier killed runs; if a kill hit between the two renames of a publish (no
    release, a previous one set aside), put the previous release back."""
    release_dir = Path(release_dir)
    previous = _siblings(release_dir, PREVIOUS)
    if previous and not release_dir.exists():
        previous.pop().rename(release_dir)
    for stale in _siblings(release_dir, STAGING) + previous:
        shutil.rmtree(stale, ignore_errors=True)


def publish(staging: Path, release_dir: Path) -> Path:
    """Replace `release_dir` by the finished `staging` folder (the old one is set aside, then removed)."""
    old = None
    if release_dir.exists():
        old = release_dir.with_name(f".{release_dir.name}.{PREVIOUS}-{staging.name.rsplit('-', 1)[-1]}")
        release_dir.rename(old)
    staging.rename(release_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return release_dir


@contextmanager
def staged_release(release_dir: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty staging folder; publish it as `release_dir` when the block ends without an exception."""
    release_dir = Path(release_dir)
    release_dir.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(release_dir)
    staging = Path(tempfile.mkdtemp(prefix=f".{release_dir.name}.{STAGING}-", dir=release_dir.parent))
    try:
        yield staging
        publish_mode(staging)  # mkdtemp makes it private: give the release the modes the umask gives
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    publish(staging, release_dir)


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """UTF-8 JSON, indented (numbers and dates of numpy/pandas written as plain values)."""
    Path(path).write_text(json.dumps(data, indent=2, default=_plain, ensure_ascii=False), encoding="utf-8")
    return Path(path)


def _plain(x: Any) -> Any:
    if hasattr(x, "item"):
        return x.item()
    if hasattr(x, "tolist"):
        return x.tolist()
    return str(x)


def write_yaml(path: str | os.PathLike, data: Any) -> Path:
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return Path(path)


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}


def find_release_dir(root: Path, required: Sequence[str], what: str) -> Path:
    """The folder under `root` (itself first) holding every `required` file."""
    marker = required[0]
    for candidate in [root, *sorted(p.parent for p in root.rglob(marker))]:
        if all((candidate / name).is_file() for name in required):
            return candidate
    raise FileNotFoundError(f"{root}: not a {what} release (no folder with {list(required)})")


DOWNLOAD_PREFIX = "churnsense-release-"


def _missing_sqlite_store(tracking_uri: str) -> Path | None:
    """The database file of a `sqlite:///` store that does not exist (MLflow would create an empty one)."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    path = Path(tracking_uri[len("sqlite:///") :])
    return None if path.is_file() else path


def _download(uri: str, tracking_uri: str | None) -> Path:
    """Download an MLflow artifact URI into a private folder removed when the process exits (and by the next run
    if this one is killed: `core.scratch`)."""
    import mlflow
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    store = tracking_uri or mlflow.get_tracking_uri()
    missing = _missing_sqlite_store(str(store))
    if missing is not None:
        raise FileNotFoundError(
            f"model {uri!r}: the MLflow store {store} does not exist (no file {missing}); set "
            "tracking_uri= (or MLFLOW_TRACKING_URI) to the store that holds the model"
        )
    dst = make_temp_dir(None, DOWNLOAD_PREFIX)
    atexit.register(shutil.rmtree, dst, True)
    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst)))
    except (MlflowException, OSError) as err:
        shutil.rmtree(dst, ignore_errors=True)
        reason = getattr(err, "message", None) or str(err)
        raise FileNotFoundError(
            f"model {uri!r}: not found in the MLflow store {store} ({reason}); set "
            "tracking_uri= (or MLFLOW_TRACKING_URI) to the store that holds it"
        ) from None


def fetch_release(
    path_or_uri: str | os.PathLike, required: Sequence[str], what: str, tracking_uri: str | None = None
) -> Path:
    """A local release folder for a path or an MLflow URI (see module doc)."""
    text = str(path_or_uri)
    if text.startswith(MLFLOW_SCHEMES):
        return find_release_dir(_download(text, tracking_uri), required, what)
    path = Path(text)
    if not path.exists():
        raise FileNotFoundError(f"model {text!r}: no such release folder (train one, or pass an MLflow URI)")
    return find_release_dir(path, required, what)
