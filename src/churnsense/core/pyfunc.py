"""The MLflow pyfunc base of every release: the release folder travels as the model's `release` artifact and is
loaded once per process; the loaded release (an ONNX Runtime session) is never pickled."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import mlflow.pyfunc


class ReleaseModel(mlflow.pyfunc.PythonModel):
    """Subclasses name `load_release(path)` and implement `predict`; `PARAMS` are the inference params (defaults)."""

    PARAMS: ClassVar[dict[str, Any]] = {}

    def load_release(self, path: Path) -> Any:
        raise NotImplementedError

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.release = self.load_release(Path(context.artifacts["release"]))

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the loaded release (an onnxruntime session cannot be pickled); load_context restores it."""
        state = dict(self.__dict__)
        state.pop("release", None)
        return state
