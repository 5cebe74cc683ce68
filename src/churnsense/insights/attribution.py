"""Attribution of a churn score to *reason groups* of its inputs, with the model as a black box.

Method (stated choice): Shapley value sampling (captum `ShapleyValueSampling`; `FeatureAblation` as the cheap
option) over one gate per reason group. A gate of 1 keeps the customer's own inputs of that group; a gate of 0
swaps them for a reference customer's (interventional Shapley with the scored population as background, averaged
over `n_background` reference draws). A group is any set of tabular columns (`cat`/`num` batch columns) and/or
event types (all of the customer's events of those types in `seq_*`). Swapping event groups merges the kept
events with the reference's events of the swapped types and re-sorts them chronologically, so the batch keeps
the contract (left-aligned, chronological, padding at the end). Attributions are in logit units and, with the
baseline, add up to the customer's logit (efficiency), so they compare across customers.

Why this and not integrated gradients: serving runs the ONNX graph (no torch, no Lightning); event types are
discrete; and reasons are about groups ("3 outages", "price rose"), not single embedding dimensions. Swapping
with real reference customers keeps every perturbed input on the data manifold (usage swapped for a typical
customer's usage tests "usage fell"; outages swapped for a typical customer's — usually none — tests "outages").
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from captum.attr import FeatureAblation, ShapleyValueSampling

Batch = dict[str, np.ndarray]
LogitFn = Callable[[Batch], np.ndarray]
SEQ_KEYS = ("seq_type", "seq_value", "seq_dt", "seq_mask")


@dataclass(frozen=True)
class BatchLayout:
    """Names behind the batch axes: `cat`/`num` column names and the event type of each `seq_type` index."""

    cat_names: Sequence[str] = ()
    num_names: Sequence[str] = ()
    event_types: Sequence[str] = ("<pad>", "<unk>")  # index -> event type name


@dataclass(frozen=True)
class GroupSpec:
    """One reason group: tabular columns (exact names or `prefix*`) and event types it covers."""

    name: str
    cat: Sequence[str] = ()
    num: Sequence[str] = ()
    events: Sequence[str] = ()


@dataclass(frozen=True)
class GroupIndex:
    """Per batch position, the group index it belongs to (-1 = in no group: never swapped)."""

    names: list[str]
    cat: np.ndarray
    num: np.ndarray
    event_type: np.ndarray  # seq_type index -> group
    extra: dict = field(default_factory=dict)


def _match(name: str, patterns: Sequence[str]) -> bool:
    return any(name == p or (p.endswith("*") and name.startswith(p[:-1])) for p in patterns)


def build_group_index(layout: BatchLayout, groups: Sequence[GroupSpec], other: str | None = "other") -> GroupIndex:
    """Assign every column and event type to the first group that names it; the rest go to `other` (if set)."""
    names = [g.name for g in groups]
    extra = len(names) if other else -1

    def assign(items: Sequence[str], attr: str) -> np.ndarray:
        out = np.full(len(items), extra, dtype=np.int64)
        for i, item in enumerate(items):
            for g, spec in enumerate(groups):
                if _match(item, getattr(spec, attr)):
                    out[i] = g
                    break
        return out

    ev = assign(list(layout.event_types), "events")
    ev[:1] = -1  # padding
    idx = GroupIndex(names + ([other] if other else []), assign(layout.cat_names, "cat"),
                     assign(layout.num_names, "num"), ev)
    used = set(idx.cat) | set(idx.num) | set(ev[1:])
    keep = [g for g in range(len(idx.names)) if g in used]
    remap = np.full(len(idx.names) + 1, -1, dtype=np.int64)
    remap[keep] = np.arange(len(keep))
    return GroupIndex([idx.names[g] for g in keep], remap[idx.cat], remap[idx.num], remap[ev])


def merge_sequences(own: Batch, ref: Batch, keep_own: np.ndarray, keep_ref: np.ndarray) -> Batch:
    """Own kept events + reference kept events, chronological, left-aligned, most recent N kept."""
    n = own["seq_type"].shape[1]
    cat = {k: np.concatenate([own[k], ref[k]], axis=1) for k in SEQ_KEYS}
    valid = np.concatenate([own["seq_mask"] & keep_own, ref["seq_mask"] & keep_ref], axis=1)
    key = np.where(valid, -cat["seq_dt"].astype(np.float64), np.inf)  # older (larger dt) first, padding last
    order = np.argsort(key, axis=1, kind="stable")
    count = valid.sum(axis=1)
    start = np.maximum(count - n, 0)[:, None]
    pos = np.minimum(start + np.arange(n)[None, :], 2 * n - 1)
    take = np.take_along_axis(order, pos, axis=1)
    out = {k: np.take_along_axis(cat[k], take, axis=1) for k in SEQ_KEYS}
    out["seq_mask"] = np.take_along_axis(valid, take, axis=1) & (np.arange(n)[None, :] < count[:, None])
    for k in ("seq_type", "seq_value", "seq_dt"):
        out[k] = np.where(out["seq_mask"], out[k], 0).astype(own[k].dtype)
    return out


def gated_batch(gates: np.ndarray, own: Batch, ref: Batch, index: GroupIndex) -> Batch:
    """The batch with each group taken from `own` where its gate is 1 and from `ref` where it is 0."""
    on = gates > 0.5
    out = dict(own)
    for key, gidx in (("cat", index.cat), ("num", index.num)):
        if key in own and own[key].shape[1]:
            col_on = np.where(gidx >= 0, on[:, np.maximum(gidx, 0)], True)
            out[key] = np.where(col_on, own[key], ref[key])
    if "seq_type" in own:
        ev_on = np.concatenate([on, np.ones((len(on), 1), dtype=bool)], axis=1)  # column -1 -> always own
        own_g, ref_g = index.event_type[own["seq_type"]], index.event_type[ref["seq_type"]]
        keep_own = np.take_along_axis(ev_on, np.where(own_g >= 0, own_g, -1), axis=1)
        keep_ref = ~np.take_along_axis(ev_on, np.where(ref_g >= 0, ref_g, -1), axis=1) & (ref_g >= 0)
        out.update(merge_sequences(own, ref, keep_own, keep_ref))
    return out


def _take(batch: Batch, rows: np.ndarray) -> Batch:
    return {k: v[rows] for k, v in batch.items()}


def attribute_groups(
    logit_fn: LogitFn,
    batch: Batch,
    index: GroupIndex,
    reference: Batch | None = None,
    method: str = "shapley",
    n_samples: int = 8,
    n_background: int = 4,
    seed: int = 0,
) -> np.ndarray:
    """Group attributions [B, G] in logit units (mean over `n_background` reference draws).

    `reference` is the background population (default: the batch itself); reference rows are drawn at random.
    """
    reference = batch if reference is None else reference
    n_ref = len(next(iter(reference.values())))
    rng = np.random.default_rng(seed)
    b = len(next(iter(batch.values())))
    total = np.zeros((b, len(index.names)))
    for _ in range(n_background):
        ref = _take(reference, rng.integers(0, n_ref, size=b))

        def forward(gates: torch.Tensor, _ref: Batch = ref) -> torch.Tensor:
            g = gates.detach().cpu().numpy()
            reps = len(g) // b
            own_r = {k: np.concatenate([v] * reps) for k, v in batch.items()} if reps > 1 else batch
            ref_r = {k: np.concatenate([v] * reps) for k, v in _ref.items()} if reps > 1 else _ref
            return torch.as_tensor(np.asarray(logit_fn(gated_batch(g, own_r, ref_r, index)), dtype=np.float64))

        gates = torch.ones((b, len(index.names)), dtype=torch.float64)
        if method == "shapley":
            torch.manual_seed(int(rng.integers(1 << 31)))
            attr = ShapleyValueSampling(forward).attribute(gates, baselines=0.0, n_samples=n_samples)
        elif method == "ablation":
            attr = FeatureAblation(forward).attribute(gates, baselines=0.0)
        else:
            raise ValueError(f"attribution method {method!r}: expected 'shapley' or 'ablation'")
        total += attr.detach().cpu().numpy()
    return total / n_background


def logit_from_probability(prob_fn: Callable[[Batch], np.ndarray], eps: float = 1e-6) -> LogitFn:
    """Turn a batch -> P(churn) function (e.g. `ChurnRelease.run(b)["churn_probability"]`) into a logit function."""

    def fn(batch: Batch) -> np.ndarray:
        p = np.clip(np.asarray(prob_fn(batch), dtype=np.float64).reshape(-1), eps, 1 - eps)
        return np.log(p / (1 - p))

    return fn


def groups_from_config(groups: Mapping[str, Mapping]) -> list[GroupSpec]:
    """`{name: {cat: [...], num: [...], events: [...]}}` -> GroupSpecs (order kept: first match wins)."""
    return [GroupSpec(name=str(n), cat=tuple(g.get("cat") or ()), num=tuple(g.get("num") or ()),
                      events=tuple(g.get("events") or ())) for n, g in groups.items()]
