"""Retention decisions: one action per customer (or none), and the call list under a budget and agent capacity.

Per customer (`recommend_actions`, a function of that customer's row and the release only): with an uplift model,
every action whose predicted effect has held-out evidence (`UpliftModel.supported`) is scored
expected saved value = uplift(a) x CLTV - cost(a), uplift capped at the customer's churn probability over the offer
horizon; an action supported on average only (`UpliftModel.average`: its average effect in a randomised offer log
is above zero, but who it helps most is not known) competes with its average effect where it is the playbook's
answer to the customer's reasons; the best one with a positive saving and an uplift above `min_uplift` is
recommended, else `none`. Unless the model's choice of action has held-out evidence of beating the playbook's
(`UpliftModel.chooses`, `uplift_policy`), only the playbook's answer competes, valued by the model. Without
an uplift model (no offer log) the action follows the playbook for the customer's top reason and claims no saving
(expected uplift and saving left empty). The `why` column says which case applied, with the numbers.

Across customers (`allocate`, on the whole call list): the candidates in order of expected saved value (then value
at risk) are taken while the budget (sum of action costs) and the capacity of their team and of their language
allow; the others are held back, with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

NONE = "none"
DEFAULT = "_default"
DECISION_COLUMNS = [
    "recommended_action",
    "action_reason",
    "talking_points",
    "action_cost",
    "expected_uplift",
    "expected_saved_value",
    "why",
]


def _codes(text: object) -> list[str]:
    return [c for c in str(text).split(";") if c] if isinstance(text, str) else []


def churn_cap(frame: pd.DataFrame) -> np.ndarray:
    """The most churn an action can prevent: `p_churn_90d` when the model has it, else `churn_probability`."""
    cap = pd.Series(1.0, index=frame.index)
    for col in ("churn_probability", "p_churn_90d"):
        if col in frame:
            cap = pd.to_numeric(frame[col], errors="coerce").fillna(cap)
    return cap.to_numpy(dtype=float)


def answering_reason(codes: list[str], action: str, playbook: Mapping[str, Mapping]) -> str:
    """The first of the customer's reason codes whose playbook action is `action` (else `_default`)."""
    return next((c for c in codes if (playbook.get(c) or {}).get("action") == action), DEFAULT)


def _talking_points(code: str, action: str, playbook: Mapping[str, Mapping]) -> str:
    entry = playbook.get(code) or {}
    if entry.get("action") != action:
        entry = next((e for e in playbook.values() if (e or {}).get("action") == action), {})
    return str(entry.get("talking_points", ""))


def _playbook_choice(codes: list[str], playbook: Mapping[str, Mapping]) -> tuple[str, str]:
    for code in codes or [DEFAULT]:
        action = (playbook.get(code) or playbook.get(DEFAULT) or {}).get("action")
        if action and action != NONE:
            return action, code
    return NONE, ""


def recommend_actions(
    frame: pd.DataFrame,
    playbook: Mapping[str, Mapping],
    actions: Mapping[str, Mapping],
    uplift: pd.DataFrame | None = None,
    supported: Mapping[str, bool] | None = None,
    at_risk: pd.Series | None = None,
    min_uplift: float = 0.0,
    average: pd.DataFrame | Mapping[str, float] | None = None,
    chooses: bool = True,
) -> pd.DataFrame:
    """`DECISION_COLUMNS` per row of `frame` (needs reason_codes, cltv; see module doc). `uplift`: predicted churn
    reduction per action (columns); `supported`: action -> held-out evidence that its effect varies by customer as
    predicted; `average`: the average effect of the actions supported on average (offered as the playbook's answer
    to a customer's reasons, valued at that average): per row and action (a frame aligned with `frame`, e.g. the
    average relative effect applied to each customer's risk) or one number per action; `chooses`: the model's choice
    of action has held-out evidence of beating the playbook's (`UpliftModel.chooses`), else every customer gets the
    playbook's answer to its reasons, when that action has evidence of an effect."""
    n = len(frame)
    risky = np.ones(n, bool) if at_risk is None else at_risk.to_numpy(dtype=bool)
    codes = [_codes(c) for c in (frame["reason_codes"] if "reason_codes" in frame else [""] * n)]
    out = pd.DataFrame(
        {
            "recommended_action": NONE,
            "action_reason": "",
            "talking_points": "",
            "action_cost": 0.0,
            "expected_uplift": 0.0,
            "expected_saved_value": 0.0,
            "why": "not at risk",
        },
        index=frame.index,
    )
    if uplift is None:
        return _playbook_decisions(out, codes, risky, playbook, actions)
    cltv, cap = frame["cltv"].to_numpy(dtype=float), churn_cap(frame)
    names = [a for a in uplift.columns if a in actions]
    personal = np.array([bool((supported or {}).get(a)) for a in names], dtype=bool)
    mean_effect = _average_matrix(average, names, n)
    on_average = ~personal & np.isfinite(mean_effect).any(axis=0)
    answer = [_playbook_choice(c, playbook)[0] for c in codes]  # the playbook's action for the customer's reasons
    answers = np.array([[a == ans for a in names] for ans in answer], dtype=bool).reshape(n, len(names))
    eligible = (personal[None, :] & (chooses or answers)) | (on_average[None, :] & answers)
    cost = np.array([float(actions[a].get("cost", 0.0)) for a in names])
    predicted = uplift[names].to_numpy(dtype=float) if names else np.zeros((n, 0))
    effect = np.where(personal[None, :], predicted, np.nan_to_num(mean_effect))
    u = np.minimum(effect, cap[:, None])
    saved = u * cltv[:, None] - cost[None, :]
    masked = np.where(eligible & (u > min_uplift) & (saved > 0), saved, -np.inf)
    rows, decided = np.flatnonzero(risky), {}  # position -> the row's DECISION_COLUMNS (written once, below)
    for i in rows:
        if not (personal.any() or on_average.any()):
            decided[i] = (
                "none: no action has held-out evidence of an effect (Qini interval not above random) "
                "nor an average effect above zero"
            )
            continue
        if not eligible[i].any():
            decided[i] = (
                f"none: the playbook's answer to this customer's reasons ({answer[i]}) has no evidence of an effect"
            )
            continue
        j = int(np.argmax(masked[i])) if names else 0
        if not np.isfinite(masked[i, j]):
            k = int(np.argmax(np.where(eligible[i], saved[i], -np.inf)))
            decided[i] = (
                f"none: the best supported action ({names[k]}) saves {saved[i, k]:,.0f} "
                f"(uplift {u[i, k]:.1%} x CLTV {cltv[i]:,.0f} - cost {cost[k]:,.0f})"
            )
            continue
        a = names[j]
        reason = answering_reason(codes[i], a, playbook)
        if not personal[j]:
            evidence = f"average effect in the randomised offer log; the playbook's answer to {reason}"
        elif chooses:
            evidence = f"held-out evidence; best of {int(eligible[i].sum())} supported"
        else:
            evidence = (
                f"held-out evidence; the playbook's answer to {reason} (no evidence that choosing otherwise helps)"
            )
        decided[i] = (
            a,
            reason,
            _talking_points(reason, a, playbook),
            cost[j],
            u[i, j],
            saved[i, j],
            f"{a}: uplift {u[i, j]:.1%} x CLTV {cltv[i]:,.0f} - cost {cost[j]:,.0f} = {saved[i, j]:,.0f} ({evidence})",
        )
    return _write_decisions(out, decided)


def _write_decisions(out: pd.DataFrame, decided: Mapping[int, str | tuple]) -> pd.DataFrame:
    """`out` with each decided row's DECISION_COLUMNS set, one column at a time (a str: only the `why` of a "none")."""
    full = [(i, d) for i, d in decided.items() if not isinstance(d, str)]
    whys = [(i, d) for i, d in decided.items() if isinstance(d, str)]
    columns = list(out.columns)
    if full:
        at = [i for i, _ in full]
        for c, name in enumerate(columns):
            values = [d[c] for _, d in full]
            out[name] = _with(out[name], at, values)
    if whys:
        out["why"] = _with(out["why"], [i for i, _ in whys], [d for _, d in whys])
    return out


def _with(column: pd.Series, positions: list[int], values: list) -> pd.Series:
    """`column` with the values at these positions replaced (keeps its dtype)."""
    data = column.to_numpy(dtype=object if not pd.api.types.is_float_dtype(column) else float, copy=True)
    data[positions] = values
    return pd.Series(data, index=column.index, name=column.name).astype(column.dtype)


def _average_matrix(average: pd.DataFrame | Mapping[str, float] | None, names: list[str], n: int) -> np.ndarray:
    """[n, actions] average effects (NaN: the action has none)."""
    if isinstance(average, pd.DataFrame):
        return average.reindex(columns=names).to_numpy(dtype=float).reshape(n, len(names))
    row = np.array([float((average or {}).get(a, np.nan)) for a in names])
    return np.broadcast_to(row, (n, len(names)))


def _playbook_decisions(out: pd.DataFrame, codes, risky, playbook, actions) -> pd.DataFrame:
    decided: dict[int, str | tuple] = {}
    for i in np.flatnonzero(risky):
        a, code = _playbook_choice(codes[i], playbook)
        if a == NONE:
            decided[i] = "none: the playbook has no action for this customer's reasons"
            continue
        decided[i] = (
            a,
            code,
            _talking_points(code, a, playbook),
            float((actions.get(a) or {}).get("cost", 0.0)),
            np.nan,
            np.nan,
            f"{a}: playbook action for {code}; no offer history, so no saving claimed",
        )
    return _write_decisions(out, decided)


def allocate(calls: pd.DataFrame, limits: Mapping[str, Any] | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(calls kept, calls held back with `why`) under `limits`: budget (sum of action_cost), capacity.team /
    capacity.language (calls per team / per script_language); null = unlimited. Order: expected saved value, then
    value at risk, then customer id."""
    limits = dict(limits or {})
    order = calls.sort_values(
        ["expected_saved_value", "value_at_risk", "customer_id"],
        ascending=[False, False, True],
        na_position="last",
        kind="stable",
    )
    budget = limits.get("budget")
    left = float(budget) if budget is not None else np.inf
    caps = {
        k: {str(x): int(v) for x, v in ((limits.get("capacity") or {}).get(k) or {}).items()}
        for k in ("team", "language")
    }
    used = {"team": {}, "language": {}}
    keep, why = np.zeros(len(order), bool), np.full(len(order), "", dtype=object)
    for i, (cost, team, lang) in enumerate(
        zip(order["action_cost"].astype(float), order["team"].astype(str), order["script_language"].astype(str))
    ):
        if cost > left:
            why[i] = f"held back: over budget ({cost:,.0f} > {left:,.0f} left)"
            continue
        full = [
            f"{k} {v}"
            for k, v in (("team", team), ("language", lang))
            if v in caps[k] and used[k].get(v, 0) >= caps[k][v]
        ]
        if full:
            why[i] = f"held back: capacity of {' and '.join(full)} reached"
            continue
        keep[i], left = True, left - cost
        used["team"][team] = used["team"].get(team, 0) + 1
        used["language"][lang] = used["language"].get(lang, 0) + 1
    held = order[~keep].assign(why=order["why"].astype(str)[~keep] + "; " + why[~keep])
    return order[keep], held
