"""One publish step per run: scores and rejects appear together or not at all, never over an input, with the
modes the umask gives; a failed run leaves the previous outputs as they were."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pandas as pd
import pytest

from churnsense.core import io
from churnsense.core.rejects import RejectsWriter
from churnsense.core.release import staged_release
from test_serving_bad_inputs import serve, write_csvs


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("target", ["output", "rejects"])
def test_an_output_never_overwrites_an_input(tiny_churn_release, tmp_path, capsys, target):
    paths = write_csvs(tmp_path)
    before = paths["customers"].read_bytes()
    extra = [f"rejects={paths['customers']}"] if target == "rejects" else []
    output = paths["customers"] if target == "output" else tmp_path / "scores.csv"
    code, _, err = serve(tiny_churn_release, paths, output, *extra, capsys=capsys)
    assert code == 2 and f"{target}={paths['customers']} is also input.customers" in err
    assert paths["customers"].read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["customers.csv", "events.csv"]


def test_scores_and_rejects_are_published_together_or_not_at_all(tiny_churn_release, tmp_path, capsys, monkeypatch):
    paths = write_csvs(tmp_path)
    output = tmp_path / "out" / "scores.csv"
    output.parent.mkdir()
    output.write_text("old scores\n")
    (tmp_path / "out" / "scores.rejects.csv").write_text("old rejects\n")

    def fail_to_finish(self):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(RejectsWriter, "finish", fail_to_finish)
    with pytest.raises(OSError, match="disk full"):
        serve(tiny_churn_release, paths, output)
    monkeypatch.undo()
    commit = io.AtomicTableWriter.commit

    def fail_second_commit(self):
        if isinstance(self, RejectsWriter):
            raise OSError("rename failed (simulated)")
        commit(self)

    monkeypatch.setattr(io.AtomicTableWriter, "commit", fail_second_commit)
    with pytest.raises(OSError, match="rename failed"):
        serve(tiny_churn_release, paths, output)  # the scores were renamed into place, then put back
    assert output.read_text() == "old scores\n"
    assert (tmp_path / "out" / "scores.rejects.csv").read_text() == "old rejects\n"
    assert sorted(p.name for p in output.parent.iterdir()) == ["scores.csv", "scores.rejects.csv"]  # no temp files
    monkeypatch.undo()
    code, _, _ = serve(tiny_churn_release, paths, output, capsys=capsys)
    assert (
        code == 0
        and len(io.read_table(output)) == 24
        and io.read_table(output.with_name("scores.rejects.csv")).columns.tolist()
        == ["source", "row", "customer_id", "column", "reason", "rows"]
    )


@pytest.mark.parametrize("umask,file_mode,dir_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_new_outputs_follow_the_umask(tiny_churn_release, tmp_path, capsys, umask, file_mode, dir_mode):
    paths = write_csvs(tmp_path)
    old = os.umask(umask)
    try:
        code, _, _ = serve(tiny_churn_release, paths, tmp_path / "scores.parquet", "insights=true", capsys=capsys)
        with staged_release(tmp_path / "release") as staging:
            (staging / "model.onnx").write_bytes(b"x")
    finally:
        os.umask(old)
    assert code == 0
    assert mode(tmp_path / "scores.parquet") == mode(tmp_path / "scores.rejects.csv") == file_mode
    assert mode(tmp_path / "scores.crm") == dir_mode and mode(tmp_path / "scores.crm" / "manifest.json") == file_mode
    assert mode(tmp_path / "release") == dir_mode and mode(tmp_path / "release" / "model.onnx") == file_mode


def test_publish_together_keeps_previous_files_on_a_failed_block(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("x\n1\n")
    with pytest.raises(RuntimeError):
        with io.publish_together(io.AtomicTableWriter(a), io.AtomicTableWriter(b)) as (wa, _wb):
            wa.write(pd.DataFrame({"x": [2]}))
            raise RuntimeError("crash")
    assert a.read_text() == "x\n1\n" and not b.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["a.csv"]
    with io.publish_together(io.AtomicTableWriter(a), io.AtomicTableWriter(b)) as (wa, _wb):
        wa.write(pd.DataFrame({"x": [2]}))
    assert (
        a.read_text() == "x\n2\n"
        and b.read_text() == ""
        and sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.csv"]
    )
