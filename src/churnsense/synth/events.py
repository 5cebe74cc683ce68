"""Event histories and feedback of one synthetic chunk (see synth_world for the mechanisms)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from churnsense.data.contract import TOPICS
from churnsense.synth.world import World

EVENT_TYPES = (
    "usage",
    "app_session",
    "payment",
    "late_payment",
    "support_contact",
    "outage",
    "price_change",
    "plan_change",
    "offer_made",
    "offer_accepted",
)
E = {t: i for i, t in enumerate(EVENT_TYPES)}
CHANNELS = (("app", "email", "call_center", "survey", "chat"), (0.35, 0.2, 0.2, 0.15, 0.1))


class Sink:
    """Collects (customer index, day, type, value) arrays."""

    def __init__(self):
        self.parts: list[tuple[np.ndarray, ...]] = []

    def add(self, idx, day, etype, value) -> None:
        idx = np.asarray(idx, dtype=np.int64)
        self.parts.append(
            (
                idx,
                np.asarray(day, float),
                np.broadcast_to(np.int8(etype), idx.shape).copy()
                if np.ndim(etype) == 0
                else np.asarray(etype, np.int8),
                np.broadcast_to(np.asarray(value, float), idx.shape).astype(float),
            )
        )

    def arrays(self) -> tuple[np.ndarray, ...]:
        return tuple(np.concatenate([p[i] for p in self.parts]) for i in range(4))


def poisson_times(rng, rate: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Homogeneous Poisson events per customer on [a, b): (customer index, day)."""
    length = np.maximum(b - a, 0)
    idx = np.repeat(np.arange(len(rate)), rng.poisson(rate * length))
    return idx, a[idx] + rng.random(idx.size) * length[idx]


def season(day: np.ndarray, start_doy: int) -> np.ndarray:
    """Usage seasonality: a mild yearly wave plus a December peak (max ~1.4)."""
    doy = (day + start_doy) % 365.25
    return 1 + 0.15 * np.sin(2 * np.pi * (doy - 100) / 365.25) + 0.25 * np.exp(-(((doy - 355) / 12) ** 2))


def usage_factor(w: World, idx: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Mechanism-driven usage intensity in [0, 1]: linear fade (usage_decline), silence after need_met onset."""
    f = np.ones(idx.size)
    ud, on = w.exposed["usage_decline"][idx], w.onset["usage_decline"][idx]
    f = np.where(ud & (day > on), np.clip(1 - (day - on) / 75, 0.05, 1), f)
    nm, on2 = w.exposed["need_met"][idx], w.onset["need_met"][idx]
    return np.where(nm & (day > on2), 0.03, f)


def make_events(rng: np.random.Generator, w: World, cfg: dict, start_doy: int) -> tuple[np.ndarray, ...]:
    """(customer index, day, type code, value) of every event inside [start, churn or window end)."""
    s, a, end = Sink(), w.start_day, np.minimum(w.churn_day, w.horizon)
    per_day = float(cfg["events_per_month"]) / 30.44
    for etype, share, scale in (("usage", 0.5, w.usage_scale), ("app_session", 0.33, None)):
        idx, day = poisson_times(rng, 1.4 * share * per_day * w.activity, a, end)
        keep = rng.random(idx.size) < season(day, start_doy) / 1.4 * usage_factor(w, idx, day)
        idx, day = idx[keep], day[keep]
        val = (
            (scale[idx] * rng.lognormal(0.5, 0.8, idx.size)) if scale is not None else rng.lognormal(1.5, 0.8, idx.size)
        )
        s.add(idx, day, E[etype], np.round(val, 3))
    nm = np.flatnonzero(w.exposed["need_met"])  # heavy-use burst before the need is met
    idx, day = poisson_times(
        rng,
        np.full(nm.size, 0.5),
        np.maximum(w.onset["need_met"][nm] - 30, a[nm]),
        np.minimum(w.onset["need_met"][nm], end[nm]),
    )
    s.add(nm[idx], day, E["usage"], np.round(w.usage_scale[nm[idx]] * rng.lognormal(2.0, 0.5, idx.size), 3))
    _payments(rng, w, s, a, end)
    _background(rng, w, s, a, end)
    _mechanism_events(rng, w, s)
    _offer_events(rng, w, s)
    idx, day, etype, value = s.arrays()
    keep = (day >= a[idx]) & (day < end[idx])
    return idx[keep], day[keep], etype[keep], value[keep]


def _payments(rng, w: World, s: Sink, a, end) -> None:
    months = int(np.ceil(w.horizon / 30.44)) + 1
    phase = rng.uniform(0, 30.44, w.n)
    idx = np.repeat(np.arange(w.n), months)
    day = phase[idx] + np.tile(np.arange(months) * 30.44, w.n) + rng.normal(0, 1, idx.size)
    charge = w.cust["monthly_charge"].to_numpy()
    s.add(idx, day, E["payment"], charge[idx])


def _background(rng, w: World, s: Sink, a, end) -> None:
    echeck = (w.cust["payment_method"].to_numpy() == "e_check") * 0.004
    for etype, rate, value in (
        ("late_payment", 0.002 + echeck, lambda k: rng.integers(1, 15, k)),
        ("support_contact", np.full(w.n, 0.006), lambda k: rng.random(k) < 0.85),
        ("outage", np.full(w.n, 0.003), lambda k: rng.lognormal(0.3, 0.8, k).round(2)),
        ("plan_change", np.full(w.n, 0.0015), lambda k: rng.choice([-1.0, 1.0], k)),
    ):
        idx, day = poisson_times(rng, rate, a, end)
        s.add(idx, day, E[etype], value(idx.size))
    idx = np.flatnonzero(rng.random(w.n) < 0.3)  # routine small price adjustments
    s.add(
        idx,
        rng.uniform(a[idx], np.maximum(end[idx], a[idx] + 1)),
        E["price_change"],
        rng.uniform(0.01, 0.05, idx.size).round(3),
    )


def _burst(rng, w: World, s: Sink, m: str, lo: int, hi: int, span: float, etype: str, value) -> None:
    idx = np.flatnonzero(w.exposed[m])
    k = rng.integers(lo, hi + 1, idx.size)
    rep = np.repeat(idx, k)
    s.add(rep, w.onset[m][rep] + rng.uniform(0, span, rep.size), E[etype], value(rep.size))


def _mechanism_events(rng, w: World, s: Sink) -> None:
    _burst(rng, w, s, "outages", 3, 6, 21, "outage", lambda k: rng.lognormal(1.2, 0.7, k).round(2))
    _burst(rng, w, s, "unresolved_support", 2, 4, 20, "support_contact", lambda k: np.zeros(k))
    _burst(rng, w, s, "price_increase", 1, 1, 0, "price_change", lambda k: rng.uniform(0.1, 0.3, k).round(3))
    idx = np.flatnonzero(w.exposed["late_payments"])
    k = rng.integers(2, 4, idx.size)
    rep = np.repeat(idx, k)
    nth = np.arange(rep.size) - np.repeat(np.cumsum(k) - k, k)
    s.add(
        rep,
        w.onset["late_payments"][rep] + nth * 30.44 + rng.uniform(0, 5, rep.size),
        E["late_payment"],
        rng.integers(10, 41, rep.size),
    )


def _offer_events(rng, w: World, s: Sink) -> None:
    o = w.offer
    s.add(o["idx"].to_numpy(), o["day"].to_numpy(), E["offer_made"], 1.0)
    acc = o[o["accepted"]]
    s.add(acc["idx"].to_numpy(), acc["day"].to_numpy() + rng.uniform(0, 3, len(acc)), E["offer_accepted"], 1.0)


def make_feedback_rows(rng: np.random.Generator, w: World, cfg: dict) -> pd.DataFrame:
    """Who writes, when, about what, with which true sentiment (text is written later)."""
    a, end = w.start_day, np.minimum(w.churn_day, w.horizon)
    idx, day = poisson_times(rng, np.full(w.n, float(cfg["feedback_rate"]) / w.horizon), a, end)
    sent = rng.choice(np.array(["negative", "neutral", "positive"], dtype=object), idx.size, p=[0.25, 0.45, 0.3])
    topic = rng.choice(
        np.array(TOPICS, dtype=object),
        idx.size,  # billing price outage support app contract
        p=[0.18, 0.12, 0.15, 0.15, 0.13, 0.1, 0.07, 0.1],
    )  # delivery other
    parts = [pd.DataFrame({"idx": idx, "day": day, "sentiment": sent, "topic": topic})]
    for m, p, span, topics, sents in (
        ("outages", 0.5, 25, ["outage"], ["negative"]),
        ("price_increase", 0.5, 20, ["price"], ["negative"]),
        ("unresolved_support", 0.6, 25, ["support"], ["negative"]),
        ("late_payments", 0.3, 40, ["billing"], ["negative", "neutral"]),
        ("negative_feedback", 1.0, 14, ["app", "contract", "delivery", "other", "support"], ["negative"]),
        ("need_met", 0.5, 20, ["other"], ["positive", "neutral"]),
    ):
        who = np.flatnonzero(w.exposed[m] & (rng.random(w.n) < p))
        if m == "negative_feedback":
            who = np.concatenate([who, who[rng.random(who.size) < 0.4]])
        parts.append(
            pd.DataFrame(
                {
                    "idx": who,
                    "day": w.onset[m][who] + rng.uniform(0, span, who.size),
                    "sentiment": rng.choice(np.array(sents, dtype=object), who.size),
                    "topic": rng.choice(np.array(topics, dtype=object), who.size),
                }
            )
        )
    fb = pd.concat(parts, ignore_index=True)
    fb = fb[(fb["day"] >= a[fb["idx"]]) & (fb["day"] < end[fb["idx"]])].reset_index(drop=True)
    pref = w.cust["language"].to_numpy()[fb["idx"].to_numpy()]
    other = rng.choice(np.array(["en", "ru", "uk", "he"], dtype=object), len(fb))
    fb["language"] = np.where(rng.random(len(fb)) < 0.9, pref, other)
    fb["channel"] = rng.choice(np.array(CHANNELS[0], dtype=object), len(fb), p=CHANNELS[1])
    return fb
