"""Bad input ends with one clear line and exit code 2, not a traceback; real bugs still raise."""

from __future__ import annotations

import pytest

from churnsense.cli import report_user_errors
from churnsense.data.validation import DataValidationError


def test_user_error_is_one_line_and_exit_code_2(capsys, monkeypatch):
    monkeypatch.delenv("CHURNSENSE_DEBUG", raising=False)

    def job(_cfg):
        raise DataValidationError("data/events.csv", "ts", [2, 3], "unparseable timestamp")

    with pytest.raises(SystemExit) as exit_info:
        report_user_errors(job, None)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("churnsense: error: data/events.csv") and "ts" in err and "Traceback" not in err


def test_bugs_and_debug_mode_keep_the_traceback(monkeypatch):
    with pytest.raises(KeyError):
        report_user_errors(lambda _cfg: {}["missing"], None)
    monkeypatch.setenv("CHURNSENSE_DEBUG", "1")
    with pytest.raises(FileNotFoundError):
        report_user_errors(lambda _cfg: open("/nonexistent/file.csv"), None)  # noqa: SIM115  (it must fail)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["task=feedback", "engine=spark"], "engine=spark scores task=churn"),
        (["task=churn", "engine=dask"], "unknown engine 'dask'"),
    ],
)
def test_serve_engine_choice_is_checked_before_any_work(overrides, message):
    from hydra import compose, initialize_config_dir

    from churnsense.cli import _serve
    from helpers import CONF

    with initialize_config_dir(config_dir=str(CONF / "serve"), version_base="1.3"):
        cfg = compose("serve", overrides=overrides)
    with pytest.raises(ValueError, match=message):
        _serve(cfg)
