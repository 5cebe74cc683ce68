"""Synthetic telecom/subscription customer base: `python -m churnsense.synth [n_customers=... seed=...]`.

Writes customers / events / feedback / offers / ground_truth / uplift_truth Parquet files to `out_dir`, chunk by
chunk (memory is bounded by `chunk_size`, not by `n_customers`). Mechanisms and offers: see `churnsense.synth.world`;
`uplift_truth` holds the true uplift of an offer made on each month start (`churnsense.synth.truth`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from churnsense.config import conf_dir
from churnsense.synth.events import EVENT_TYPES, make_events, make_feedback_rows
from churnsense.synth.text import make_feedback_texts
from churnsense.synth.truth import truth_table
from churnsense.synth.world import MECHANISMS, World, make_world

DAY_NS = 86_400 * 10**9
TABLES = ("customers", "events", "feedback", "offers", "ground_truth", "uplift_truth")


def _ts(start: pd.Timestamp, day: np.ndarray) -> np.ndarray:
    ns = start.value + np.floor(np.nan_to_num(day, posinf=0.0) * 86400).astype(np.int64) * 10**9
    return ns.astype("datetime64[ns]")


def _ids(offset: int, n: int) -> np.ndarray:
    return ("C" + pd.Series(np.arange(offset + 1, offset + n + 1)).astype(str).str.zfill(7)).to_numpy(object)


def _customers(w: World, ids: np.ndarray, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    c = w.cust.drop(columns="signup_day")
    churn = np.where(np.isfinite(w.churn_day), w.churn_day, np.nan)
    return pd.DataFrame(
        {
            "customer_id": ids,
            "signup_date": _ts(start, w.cust["signup_day"].to_numpy()),
            **{k: c[k].to_numpy() for k in c},
            "churn_date": pd.to_datetime(_ts(start, churn)).where(np.isfinite(churn)),
            "observed_until": np.full(w.n, end.to_datetime64()),
        }
    )


def _events(rng, w: World, ids: pa.Array, start: pd.Timestamp, cfg, start_doy: int) -> pa.Table:
    idx, day, etype, value = make_events(rng, w, cfg, start_doy)
    order = np.lexsort((day, idx))
    idx, day, etype, value = idx[order], day[order], etype[order], value[order]
    types = pa.DictionaryArray.from_arrays(pa.array(etype.astype(np.int32)), pa.array(EVENT_TYPES))
    return pa.table(
        {
            "customer_id": ids.take(pa.array(idx)),
            "ts": pa.array(_ts(start, day)),
            "event_type": types.cast(pa.string()),
            "value": pa.array(value),
        }
    )


def _feedback(rng, w: World, ids: np.ndarray, start: pd.Timestamp, cfg) -> pd.DataFrame:
    fb = make_feedback_rows(rng, w, cfg).sort_values(["idx", "day"], kind="stable", ignore_index=True)
    sent = fb["sentiment"].to_numpy(object)
    texts = make_feedback_texts(
        rng, sent, fb["topic"].to_numpy(object), fb["language"].to_numpy(object), float(cfg["mixed_language_rate"])
    )
    noisy = rng.random(len(fb)) < float(cfg["label_noise"])  # the stored label is wrong for these
    shift = rng.integers(1, 3, len(fb))
    labels = np.array(["negative", "neutral", "positive"], dtype=object)
    code = pd.Categorical(sent, categories=labels).codes
    label = np.where(noisy, labels[(code + shift) % 3], sent)
    return pd.DataFrame(
        {
            "customer_id": ids[fb["idx"].to_numpy()],
            "ts": _ts(start, fb["day"].to_numpy()),
            "channel": fb["channel"].to_numpy(),
            "text": texts,
            "language": fb["language"].to_numpy(),
            "sentiment": label,
            "topic": fb["topic"].to_numpy(),
            "true_sentiment": sent,
        }
    )


def _offers(w: World, ids: np.ndarray, start: pd.Timestamp, outcome_days: float) -> pd.DataFrame:
    """The offer log: control rows have no action and no team; `churned_within_<outcome_days>d` = the outcome."""
    o = w.offer
    day = o["day"].to_numpy()
    churn = w.churn_day[o["idx"].to_numpy()]
    within = (churn > day) & (churn <= day + outcome_days)
    blank = lambda col: o[col].where(o[col] != "", None).to_numpy()  # noqa: E731
    return pd.DataFrame(
        {
            "customer_id": ids[o["idx"].to_numpy()],
            "ts": _ts(start, day),
            "action": blank("action"),
            "treated": o["treated"].to_numpy(),
            "team": blank("team"),
            "propensity": o["propensity"].to_numpy(),
            "accepted": o["accepted"].to_numpy(),
            f"churned_within_{int(outcome_days)}d": within,
        }
    )


def _ground_truth(w: World, ids: np.ndarray, start: pd.Timestamp) -> pd.DataFrame:
    churned = np.isfinite(w.churn_day)
    exposed = np.full(w.n, "", dtype=object)
    for m in MECHANISMS:
        exposed = np.where(w.exposed[m], np.where(exposed == "", m, exposed + ";" + m), exposed)
    gt = pd.DataFrame(
        {
            "customer_id": ids,
            "churned": churned,
            "churn_date": pd.to_datetime(_ts(start, np.where(churned, w.churn_day, 0))).where(churned),
            "drivers": w.drivers,
            "exposed": exposed,
            "p_churn_no_offer": w.p_churn,
        }
    )
    for m in MECHANISMS:
        gt[f"onset_{m}"] = pd.to_datetime(_ts(start, w.onset[m])).where(w.exposed[m])
    for a, u in w.uplift.items():
        gt[f"uplift_{a}"] = u
    return gt


class _Writers:
    """One ParquetWriter per output table, opened on the first chunk."""

    def __init__(self, out_dir: Path):
        self.out_dir, self.w = out_dir, {}

    def write(self, name: str, table: pa.Table | pd.DataFrame) -> None:
        if isinstance(table, pd.DataFrame):
            table = pa.Table.from_pandas(table, preserve_index=False)
        if name not in self.w:
            self.w[name] = pq.ParquetWriter(self.out_dir / f"{name}.parquet.tmp", table.schema)
        self.w[name].write_table(table.cast(self.w[name].schema))

    def close(self) -> None:
        for name, writer in self.w.items():
            writer.close()
            (self.out_dir / f"{name}.parquet.tmp").replace(self.out_dir / f"{name}.parquet")


def synth_config(**overrides: Any) -> dict[str, Any]:
    """`conf/synth.yaml` composed with overrides (`n_customers=500`), resolved, as a plain dict."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose("synth", overrides=[f"{k}={v}" for k, v in overrides.items()])
    d = OmegaConf.to_container(cfg, resolve=True)
    d.pop("paths", None)
    return d


def generate(cfg: dict[str, Any]) -> dict[str, Any]:
    """Generate the base into cfg["out_dir"]; returns a summary (counts, churn rate, driver mix, seconds)."""
    t0 = time.perf_counter()
    out = Path(cfg["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    start = pd.Timestamp(cfg["start_date"])
    end = start + pd.DateOffset(months=int(cfg["months"]))
    horizon = (end - start) / pd.Timedelta(days=1)
    n_total, chunk = int(cfg["n_customers"]), int(cfg["chunk_size"])
    writers, stats = _Writers(out), {"customers": 0, "events": 0, "feedback": 0, "offers": 0, "churned": 0}
    ocfg = cfg["offers"]
    window = float(ocfg["outcome_days"])
    cutoffs = list(pd.date_range(start + pd.DateOffset(months=1), end - pd.DateOffset(months=1), freq="MS"))
    drivers: dict[str, int] = {}
    for k, offset in enumerate(range(0, n_total, chunk)):
        rng = np.random.default_rng([int(cfg["seed"]), k])
        n = min(chunk, n_total - offset)
        w = make_world(rng, n, horizon, cfg)
        ids = _ids(offset, n)
        ev = _events(rng, w, pa.array(ids, pa.string()), start, cfg, start.day_of_year)
        for name, table in (
            ("customers", _customers(w, ids, start, end)),
            ("events", ev),
            ("feedback", _feedback(rng, w, ids, start, cfg)),
            ("offers", _offers(w, ids, start, window)),
            ("ground_truth", _ground_truth(w, ids, start)),
            ("uplift_truth", truth_table(w, ids, start, cutoffs, window, float(cfg["background_churn"]), ocfg)),
        ):
            writers.write(name, table)
            stats[name] = (
                stats.get(name, 0) + table.num_rows if isinstance(table, pa.Table) else stats.get(name, 0) + len(table)
            )
        stats["churned"] += int(np.isfinite(w.churn_day).sum())
        stats["offers_control"] = stats.get("offers_control", 0) + int((~w.offer["treated"]).sum())
        for codes in w.drivers[w.drivers != ""]:
            for m in codes.split(";"):
                drivers[m] = drivers.get(m, 0) + 1
    writers.close()
    summary = {
        **stats,
        "churn_rate": stats["churned"] / max(n_total, 1),
        "driver_counts": drivers,
        "events_per_customer": stats["events"] / max(n_total, 1),
        "seconds": time.perf_counter() - t0,
        "start": str(start.date()),
        "end": str(end.date()),
    }
    (out / "summary.json").write_text(json.dumps({"config": cfg, "summary": summary}, indent=1, default=str))
    return summary


def main() -> None:
    import hydra
    from omegaconf import OmegaConf

    @hydra.main(config_path=str(conf_dir()), config_name="synth", version_base="1.3")
    def _run(cfg) -> None:
        summary = generate(OmegaConf.to_container(cfg, resolve=True))
        print(json.dumps(dict(summary.items()), indent=1, default=str))

    _run()


if __name__ == "__main__":
    main()
