"""Attribution of a churn score to *reason groups* of its inputs, with the model as a black box.

Method (stated choice): Shapley value sampling (`FeatureAblation`-style one-at-a-time swaps as the cheap option)
over one gate per reason group. A gate of 1 keeps the customer's own inputs of that group; a gate of 0 swaps them
for a reference customer's (interventional Shapley, averaged over `n_background` reference draws). The reference
population is fixed by the release (a sample of training rows saved with it), and each customer's reference draws
and permutations come from a generator seeded by its id, so a customer's reasons are a function of its own inputs
and the release only: the same in any batch, partition or row order. A group is any set of tabular columns
(`cat`/`num` batch columns) and/or event types (all of the customer's events of those types in `seq_*`). Swapping
event groups merges the kept events with the reference's events of the swapped types and re-sorts them
chronologically, so the batch keeps the contract (left-aligned, chronological, padding at the end). Attributions
are in logit units and, with the baseline, add up to the customer's logit (efficiency), so they compare across
customers. (Same estimator as captum's `ShapleyValueSampling`, which shares one permutation across the rows of a
batch; drawing them per row is what makes a row's result independent of its batch.)

Why this and not integrated gradients: serving runs the ONNX graph (no torch, no Lightning); event types are
discrete; and reasons are about groups ("3 outages", "price rose"), not single embedding dimensions. Swapping
with real reference customers keeps every perturbed input on the data manifold (usage swapped for a typical
customer's usage tests "usage fell"; outages swapped for a typical customer's — usually none — tests "outages").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

Batch = dict[str, np.ndarray]
LogitFn = Callable[[Batch], np.ndarray]
SEQ_KEYS = ("seq_type", "seq_value", "seq_dt", "seq_mask")
INPUT_KEYS = ("cat", "num", *SEQ_KEYS)  # the model inputs an attribution perturbs
SAMPLED = ("shapley", "antithetic")  # permutation-sampling estimators
METHODS = (*SAMPLED, "ablation")


@dataclass(frozen=True)
class BatchLayout:
    """Names behind the batch axes: `cat`/`num` column names and the event type of each `seq_type` index."""

    cat_names: Sequence[str] = ()
    num_names: Sequence[str] = ()
    event_types: Sequence[str] = ("<pad>", "<unk>")  # index -> event type name
    # `num` columns computed from the event history -> the event type behind them (`*` every type, `prefix*` all
    # types with that prefix): such a column is swapped together with its events, so a perturbed batch stays coherent
    num_sources: Mapping[str, str] = field(default_factory=dict)


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


AUTO_EVENTS, AUTO_ATTR = "events:", "attr:"
ACTIVITY = "attr:activity"  # automatic group of the history aggregates over every event type


def _source_types(source: str, event_types: Sequence[str]) -> list[str]:
    """Event types an aggregate with this source is computed from (empty for `*`: every type)."""
    if source == "*":
        return []
    return [t for t in event_types if _match(t, [source])]


def auto_groups(layout: BatchLayout, groups: Sequence[GroupSpec]) -> list[GroupSpec]:
    """`groups` + one group per input they leave uncovered: `events:<type>` per event type and `attr:<column>` per
    tabular column (a numeric column and its `__missing` indicator together), so data mapped by config alone gets
    specific reasons instead of one `other` bucket."""
    out = list(groups)
    covered = lambda item, attr: any(_match(item, getattr(g, attr)) for g in out)  # noqa: E731
    for t in layout.event_types[2:]:  # after padding and unknown
        if not covered(t, "events"):
            out.append(GroupSpec(name=f"{AUTO_EVENTS}{t}", events=(t,)))
    for c in layout.cat_names:
        if not covered(c, "cat"):
            out.append(GroupSpec(name=f"{AUTO_ATTR}{c}", cat=(c,)))
    activity = []
    for c in layout.num_names:
        base = c.removesuffix("__missing")
        source = layout.num_sources.get(base)
        if source == "*" and not covered(c, "num"):
            activity.append(c)
        elif source is None and not covered(c, "num"):
            out.append(GroupSpec(name=f"{AUTO_ATTR}{base}", num=(base, f"{base}__missing")))
    if activity:
        out.append(GroupSpec(name=ACTIVITY, num=tuple(activity)))
    return out


def build_group_index(
    layout: BatchLayout, groups: Sequence[GroupSpec], other: str | None = "other", auto: bool = False
) -> GroupIndex:
    """Assign every column and event type to the first group that names it; the rest go to `other` (if set), or
    with `auto` to groups of their own (`auto_groups`)."""
    groups = auto_groups(layout, groups) if auto else groups
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
    num = assign(layout.num_names, "num")
    for i, c in enumerate(layout.num_names):  # history aggregates follow the group of their events
        types = _source_types(layout.num_sources.get(c.removesuffix("__missing"), "*"), layout.event_types[2:])
        groups_of = [int(ev[list(layout.event_types).index(t)]) for t in types]
        if groups_of:
            num[i] = groups_of[0]
    idx = GroupIndex(names + ([other] if other else []), assign(layout.cat_names, "cat"), num, ev)
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


def row_seeds(keys: Sequence) -> np.ndarray:
    """A stable uint64 per row from its key (e.g. the customer id; same key -> same value in any batch, order or
    process): seeds that row's reference draws and permutations, so its attribution is a function of its own
    inputs, the reference population and `seed` only."""
    return pd.util.hash_array(np.asarray([str(k) for k in keys], dtype=object), categorize=False)


def _draws(
    seeds: np.ndarray, seed: int, n_ref: int, n_background: int, n_samples: int, n_groups: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per row: reference row indices [B, n_background] and group permutations [B, n_background, n_samples, G]."""
    refs = np.empty((len(seeds), n_background), dtype=np.int64)
    perms = np.empty((len(seeds), n_background, n_samples, n_groups), dtype=np.int64)
    for i, h in enumerate(seeds):
        rng = np.random.default_rng([int(seed), int(h)])
        refs[i] = rng.integers(0, n_ref, size=n_background)
        perms[i] = np.argsort(rng.random((n_background, n_samples, n_groups)), axis=-1)
    return refs, perms


def _pad_sequences(batch: Batch, n: int) -> Batch:
    """`seq_*` padded at the end to length `n` (padding = 0 / False), so own and reference events can merge."""
    m = batch["seq_type"].shape[1] if "seq_type" in batch else n
    if m >= n:
        return batch
    return {k: np.pad(v, ((0, 0), (0, n - m))) if k in SEQ_KEYS else v for k, v in batch.items()}


def active_groups(own: Batch, ref: Batch, index: GroupIndex) -> np.ndarray:
    """[B, G]: the groups whose gate changes a row's model input: a tabular column that differs from the
    reference's, or an event of the group on either side. The others are null players (no coalition's input
    depends on their gate), so their Shapley value is 0 and leaving them out changes no other group's value."""
    g = len(index.names)
    active = np.zeros((len(own["seq_type"] if "seq_type" in own else own["cat"]), g), dtype=bool)
    for key, gidx in (("cat", index.cat), ("num", index.num)):
        if key in own and own[key].shape[1]:
            differs = own[key] != ref[key]
            for group in np.unique(gidx[gidx >= 0]):
                active[:, group] |= differs[:, gidx == group].any(axis=1)
    if "seq_type" in own:
        for side in (own, ref):
            groups = np.where(side["seq_mask"], index.event_type[side["seq_type"]], -1)
            present = groups[..., None] == np.arange(g)[None, None, :]
            active |= present.any(axis=1)
    return active


def _active_first(perms: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Each permutation [B, S, G] with the row's active groups first (in their sampled order), null players last:
    the same Shapley sample (null players add nothing wherever they stand)."""
    g = perms.shape[-1]
    act = np.take_along_axis(np.broadcast_to(active[:, None, :], perms.shape), perms, axis=2)
    key = np.where(act, 0, g) + np.arange(g)
    return np.take_along_axis(perms, np.argsort(key, axis=2, kind="stable"), axis=2)


def _reversed_active(order: np.ndarray, k: np.ndarray) -> np.ndarray:
    """The antithetic partner of each permutation: its first k (active) groups in reverse order."""
    j = np.arange(order.shape[-1])[None, None, :]
    kk = k[:, None, None]
    return np.take_along_axis(order, np.broadcast_to(np.where(j < kk, kk - 1 - j, j), order.shape), axis=2)


def _needed(k: np.ndarray, s: int, g: int) -> np.ndarray:
    """[B, S, G+1]: the prefixes worth evaluating: 1..k-1 of every permutation, and the empty (0) and full (k)
    coalitions once per row (all permutations of a reference share them); longer prefixes only add null players."""
    j = np.arange(g + 1)[None, None, :]
    need = np.broadcast_to((j >= 1) & (j < k[:, None, None]), (len(k), s, g + 1)).copy()
    need[:, 0, 0] = True
    need[np.arange(len(k)), 0, k] = True
    return need


def _fill(values: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Prefix values [B, S, G+1] evaluated where `_needed`: every permutation gets the shared empty coalition
    value at 0 and the full value from k on."""
    full = values[np.arange(len(k)), 0, k]
    values[:, :, 0] = values[:, :1, 0]
    j = np.arange(values.shape[2])[None, None, :]
    return np.where(j >= k[:, None, None], full[:, None, None], values)


def _coalitions(perms: np.ndarray, method: str) -> np.ndarray:
    """Gate states to evaluate per row, [B, M, G]: Shapley = for each permutation the G+1 prefixes (all swapped,
    then groups switched back on in permutation order); ablation = all own, then each group swapped alone."""
    b, s, g = perms.shape
    if method in SAMPLED:
        rank = np.argsort(perms, axis=-1)  # position of each group in its permutation
        on = rank[:, :, None, :] < np.arange(g + 1)[None, None, :, None]
        return on.reshape(b, s * (g + 1), g)
    if method == "ablation":
        return np.concatenate([np.ones((1, g), bool), ~np.eye(g, dtype=bool)])[None].repeat(b, axis=0)
    raise ValueError(f"attribution method {method!r}: expected one of {', '.join(METHODS)}")


def _contributions(values: np.ndarray, perms: np.ndarray, method: str) -> np.ndarray:
    """Group attributions [B, G] from the logits of `_coalitions` ([B, M])."""
    b, s, g = perms.shape
    if method == "ablation":
        return values[:, :1] - values[:, 1:]
    v = values.reshape(b, s, g + 1)
    rank = np.argsort(perms, axis=-1)
    gain = np.take_along_axis(v, rank + 1, axis=2) - np.take_along_axis(v, rank, axis=2)
    return gain.mean(axis=1)


def _estimate(
    logit_fn: LogitFn, own: Batch, ref: Batch, perms: np.ndarray, index: GroupIndex, method: str
) -> np.ndarray:
    """Group attributions [B, G] of `own` rows against one reference row each, from sampled permutations
    [B, S, G]. Sampled methods evaluate only the coalitions that matter: the prefixes over the row's active groups
    (`active_groups`), with the empty and full coalitions evaluated once for all its permutations; `antithetic`
    adds the reverse of each permutation (same endpoints, G-1 more evaluations)."""
    b, g = len(perms), perms.shape[-1]
    if method == "ablation":
        gates = _coalitions(perms, method)
        m = gates.shape[1]
        tiled = np.repeat(np.arange(b), m)
        out = gated_batch(gates.reshape(-1, g), _take(own, tiled), _take(ref, tiled), index)
        return _contributions(np.asarray(logit_fn(out), dtype=np.float64).reshape(b, m), perms, method)
    active = active_groups(own, ref, index)
    k = active.sum(axis=1)
    order = _active_first(perms, active)
    if method == "antithetic":
        order = np.concatenate([order, _reversed_active(order, k)], axis=1)
    s = order.shape[1]
    need = _needed(k, s, g)
    which = np.nonzero(need)[0]
    gates = _coalitions(order, "shapley").reshape(b, s, g + 1, g)[need]
    values = np.full((b, s, g + 1), np.nan)
    values[need] = np.asarray(
        logit_fn(gated_batch(gates, _take(own, which), _take(ref, which), index)), dtype=np.float64
    ).reshape(-1)
    return _contributions(_fill(values, k).reshape(b, -1), order, "shapley")


def evaluations_per_row(method: str, n_samples: int, n_groups: int) -> int:
    """Model rows one row's estimate against one reference can need at most (sizes the model calls)."""
    if method == "ablation":
        return n_groups + 1
    return _n_permutations(method, n_samples) * (2 if method == "antithetic" else 1) * (n_groups + 1)


def _n_permutations(method: str, n_samples: int) -> int:
    """Permutations drawn per reference: `n_samples`; antithetic draws half of them and adds their reverses."""
    if method == "antithetic":
        return max(1, (int(n_samples) + 1) // 2)
    return max(1, int(n_samples)) if method == "shapley" else 1


def attribute_groups(
    logit_fn: LogitFn,
    batch: Batch,
    index: GroupIndex,
    reference: Batch | None = None,
    method: str = "shapley",
    n_samples: int = 8,
    n_background: int = 4,
    seed: int = 0,
    keys: Sequence | None = None,
    max_eval_rows: int = 8192,
) -> np.ndarray:
    """Group attributions [B, G] in logit units (mean over `n_background` reference draws).

    `method`: `shapley` (`n_samples` random permutations per reference), `antithetic` (`n_samples` permutations
    per reference in antithetic pairs: a random one and its reverse) or `ablation` (each group swapped alone).
    `reference`: the background population (default: the batch itself). Each row draws its reference rows and
    permutations from its own generator, seeded by `seed` and its entry in `keys` (default: the row position), so
    with a fixed `reference` a row's attribution does not depend on the other rows of the batch or their order.
    The model sees at most `max_eval_rows` rows per call.
    """
    if method not in METHODS:
        raise ValueError(f"attribution method {method!r}: expected one of {', '.join(METHODS)}")
    reference = batch if reference is None else reference
    b, g = len(next(iter(batch.values()))), len(index.names)
    if b == 0 or g == 0:
        return np.zeros((b, g))
    n_seq = max((v.shape[1] for k, v in (*batch.items(), *reference.items()) if k in SEQ_KEYS), default=0)
    batch, reference = _pad_sequences(batch, n_seq), _pad_sequences(reference, n_seq)
    n_ref = len(next(iter(reference.values())))
    seeds = row_seeds(range(b) if keys is None else keys)
    refs, perms = _draws(seeds, seed, n_ref, n_background, _n_permutations(method, n_samples), g)
    step = max(1, max_eval_rows // evaluations_per_row(method, n_samples, g))
    total = np.zeros((b, g))
    for d in range(n_background):
        for lo in range(0, b, step):
            rows = np.arange(lo, min(b, lo + step))
            total[rows] += _estimate(
                logit_fn, _take(batch, rows), _take(reference, refs[rows, d]), perms[rows, d], index, method
            )
    return total / n_background


def logit_from_probability(prob_fn: Callable[[Batch], np.ndarray], eps: float = 1e-6) -> LogitFn:
    """Turn a batch -> P(churn) function (e.g. `ChurnRelease.run(b)["churn_probability"]`) into a logit function."""

    def fn(batch: Batch) -> np.ndarray:
        p = np.clip(np.asarray(prob_fn(batch), dtype=np.float64).reshape(-1), eps, 1 - eps)
        return np.log(p / (1 - p))

    return fn


def groups_from_config(groups: Mapping[str, Mapping]) -> list[GroupSpec]:
    """`{name: {cat: [...], num: [...], events: [...]}}` -> GroupSpecs (order kept: first match wins)."""
    return [
        GroupSpec(
            name=str(n),
            cat=tuple(g.get("cat") or ()),
            num=tuple(g.get("num") or ()),
            events=tuple(g.get("events") or ()),
        )
        for n, g in groups.items()
    ]
