"""Config helpers shared by every entry point: OmegaConf resolvers used in `conf/`.

`${churnsense.mul:a,b}` -> a * b (a knob derived from another one, e.g. a minimum learning rate).
`${churnsense.name:churn,${data.name}}` -> `churn` for the demo data set, `churn-<data name>` for any other, so
each data set gets its own release folder and registered model name (`churnsense-churn-telco`), and training on
your own table never overwrites the demo's release or registers as a version of the demo's model.
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

DEMO_DATA = ("synth", "demo")
CONF_ENV = "CHURNSENSE_CONF_DIR"


def conf_dir() -> Path:
    """The project's `conf/` folder for entry points that are not `train.py` / `serve.py`: `$CHURNSENSE_CONF_DIR`,
    else `./conf` in the working directory (a checkout, the Docker image), else the checkout holding this package."""
    for candidate in (os.environ.get(CONF_ENV), Path.cwd() / "conf", Path(__file__).resolve().parents[2] / "conf"):
        if candidate and (Path(candidate) / "train.yaml").is_file():
            return Path(candidate).resolve()
    raise FileNotFoundError(f"no churnsense conf/ folder found: run from the project folder or set {CONF_ENV}")


def artifact_name(task: str, data_name: str | None = None) -> str:
    """`<task>` for the demo data set (or none), `<task>-<data name>` otherwise."""
    if not data_name or str(data_name) in DEMO_DATA:
        return str(task)
    return f"{task}-{data_name}"


def multiply(a: float, b: float) -> float:
    """`${churnsense.mul:${model.lr},0.05}`: a knob derived from another one."""
    return float(a) * float(b)


def register_resolvers() -> None:
    """Register churnsense's resolvers with OmegaConf (idempotent)."""
    OmegaConf.register_new_resolver("churnsense.name", artifact_name, replace=True)
    OmegaConf.register_new_resolver("churnsense.mul", multiply, replace=True)


register_resolvers()
