"""One release protocol for every model: staged, published whole or not at all, previous release kept on a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from churnsense.core.release import clean_leftovers, fetch_release, staged_release


def _publish(release: Path, version: str) -> None:
    with staged_release(release) as staging:
        for name in ("model.onnx", "pipeline.json", "metadata.json"):
            (staging / name).write_text(f"{version}:{name}")


def _contents(release: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(release.iterdir())}


def test_publish_replaces_everything_at_once(tmp_path):
    release = tmp_path / "churn"
    _publish(release, "v1")
    _publish(release, "v2")
    assert _contents(release) == {n: f"v2:{n}" for n in ("metadata.json", "model.onnx", "pipeline.json")}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["churn"]  # no staging or previous folders left


def test_failed_build_leaves_previous_release(tmp_path):
    release = tmp_path / "churn"
    _publish(release, "v1")
    with pytest.raises(RuntimeError):
        with staged_release(release) as staging:
            (staging / "model.onnx").write_text("half")
            raise RuntimeError("export failed")
    assert _contents(release)["model.onnx"] == "v1:model.onnx" and len(list(tmp_path.iterdir())) == 1


def test_export_killed_midway_keeps_previous_release(tmp_path):
    """A training job killed (SIGKILL) while its release is being written: readers still see the previous
    release, whole; the next publish removes the killed job's staging folder."""
    release = tmp_path / "churn"
    _publish(release, "v1")
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from churnsense.core.release import staged_release
        with staged_release(Path({str(release)!r})) as staging:
            (staging / "model.onnx").write_bytes(b"x" * 1_000_000)   # half-way through an export
            print("writing", flush=True)
            time.sleep(60)
            (staging / "pipeline.json").write_text("never written")
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert _contents(release) == {n: f"v1:{n}" for n in ("metadata.json", "model.onnx", "pipeline.json")}
    assert fetch_release(release, ("model.onnx", "pipeline.json"), "test") == release
    leftovers = [p for p in tmp_path.iterdir() if p.name != "churn"]
    assert leftovers and all(p.name.startswith(".churn.staging-") for p in leftovers)
    _publish(release, "v2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["churn"]


def test_kill_between_the_two_renames_is_recovered(tmp_path):
    """The previous release set aside, the new one not yet in place: the next publish puts the previous back first."""
    release = tmp_path / "churn"
    _publish(release, "v1")
    release.rename(tmp_path / ".churn.previous-abc")
    clean_leftovers(release)
    assert _contents(release)["model.onnx"] == "v1:model.onnx" and len(list(tmp_path.iterdir())) == 1


def test_not_a_release(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such release folder"):
        fetch_release(tmp_path / "missing", ("model.onnx",), "churn")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a churn release"):
        fetch_release(tmp_path / "empty", ("model.onnx",), "churn")
