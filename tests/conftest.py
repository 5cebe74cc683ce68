"""Shared pytest setup: CPU only, quiet, deterministic."""
from __future__ import annotations

import os

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_churn_release(tmp_path_factory):
    """One tiny churn release (untrained net, fitted pipeline and insights; `test_serving_churn.build_release`)
    shared by the serving tests of the whole session: read-only, built once."""
    from test_serving_churn import build_release

    return build_release(tmp_path_factory.mktemp("tiny-release"))
