"""Drift of a scoring run against a reference profile: build, stream, merge, compare (pandas/numpy only).

A *profile* holds, per feature, counts that can be added up partition by partition and merged across runs:
- numeric: counts in quantile bins whose cut points come from the reference (`edges`), plus the missing count;
- categorical: counts per category (the reference keeps its `max_categories` most frequent; the rest is pooled in
  `other`), plus the missing count; categories the reference never saw are counted under their own name.
Each feature also carries a `group`: `input` (a model input column), `derived` (a summary such as the event-type mix
or events per customer) or `prediction` (the score distribution, the share at risk).

The reference is built once from in-memory frames at training time (`reference_profile`) and saved as plain JSON
with the release; a scoring run feeds each partition to a `ProfileAccumulator` made from it and calls `compare` once
at the end. The statistic is the population stability index (PSI) over the bins + a missing bin; a categorical
feature also drifts when categories unknown to the reference reach `new_category_share` of its rows.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FORMAT, VERSION = "churnsense-drift-profile", 1
NUMERIC, CATEGORICAL = "numeric", "categorical"
GROUPS = ("input", "derived", "prediction")
MISSING, OTHER = "(missing)", "(other)"
Values = pd.Series | np.ndarray | list


@dataclass(frozen=True)
class ProfileSettings:
    """How a reference profile is binned (conf/drift/default.yaml at training time)."""

    bins: int = 10
    max_categories: int = 200


@dataclass(frozen=True)
class DriftThresholds:
    """When a feature and a run count as drifted (conf/serve/drift/default.yaml)."""

    psi: float
    new_category_share: float
    min_rows: int
    max_drifted_share: float
    epsilon: float
    max_new_categories: int
    per_feature: Mapping[str, float] = field(default_factory=dict)

    def psi_for(self, name: str) -> float:
        return float(self.per_feature.get(name, self.psi))

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> DriftThresholds:
        """From the serving `drift` config block (its `enabled` switch is the caller's); a misspelt or missing key
        is a ValueError naming it."""
        keys = set(cls.__dataclass_fields__)
        unknown, missing = set(cfg) - keys - {"enabled"}, keys - set(cfg) - {"per_feature"}
        if unknown or missing:
            raise ValueError(
                f"drift config: unknown keys {sorted(unknown)}, missing keys {sorted(missing)} "
                f"(expected {sorted(keys)})"
            )
        return cls(**{k: (dict(v) if k == "per_feature" else v) for k, v in cfg.items() if k in keys})


def kind_of(values: Values) -> str:
    """`numeric` for numbers (not booleans), else `categorical`."""
    dtype = values.dtype if hasattr(values, "dtype") else np.asarray(values).dtype
    if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
        return CATEGORICAL
    return NUMERIC


def _floats(values: Values) -> np.ndarray:
    if isinstance(values, pd.Series):
        return values.to_numpy(dtype="float64", na_value=np.nan)
    return np.asarray(values, dtype="float64")


def _category_counts(values: Values) -> tuple[dict[str, int], int]:
    """(count per category as text, missing count)."""
    s = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values, dtype=object))
    counts = s.value_counts(dropna=True, sort=False)
    return {str(k): int(v) for k, v in counts.items()}, int(len(s) - counts.sum())


def _extreme(pick, a: float | None, b: float | None) -> float | None:
    known = [v for v in (a, b) if v is not None]
    return pick(known) if known else None


@dataclass
class FeatureProfile:
    """Counts of one feature. Numeric: `counts[i]` = values in [edges[i-1], edges[i]) (open at both ends);
    categorical: `categories` maps a category to its count. `lo`/`hi`: range seen (for display only)."""

    kind: str
    group: str
    missing: int = 0
    edges: list[float] | None = None
    counts: list[int] | None = None
    categories: dict[str, int] | None = None
    other: int = 0
    lo: float | None = None
    hi: float | None = None

    @property
    def rows(self) -> int:
        observed = sum(self.counts) if self.kind == NUMERIC else sum(self.categories.values()) + self.other
        return int(observed + self.missing)

    def empty(self) -> FeatureProfile:
        """A zero-count profile with the same bins (what a scoring run accumulates into)."""
        if self.kind == NUMERIC:
            return FeatureProfile(NUMERIC, self.group, edges=list(self.edges), counts=[0] * len(self.counts))
        return FeatureProfile(CATEGORICAL, self.group, categories={})

    def add(self, values: Values, max_new: int | None = None, known: Mapping[str, int] | None = None) -> None:
        """Count `values` in place. Categorical: a category outside `known` (the reference's) beyond the first
        `max_new` such categories is pooled in `other`, so memory stays bounded whatever the input."""
        if self.kind == NUMERIC:
            x = _floats(values)
            bad = ~np.isfinite(x)  # NaN and +-inf count as missing (quantiles and JSON see finite numbers only)
            x = x[~bad]
            self.missing += int(bad.sum())
            idx = np.searchsorted(np.asarray(self.edges, dtype="float64"), x, side="right")
            self.counts = (np.asarray(self.counts) + np.bincount(idx, minlength=len(self.counts))).tolist()
            if x.size:
                self.lo = float(x.min()) if self.lo is None else min(self.lo, float(x.min()))
                self.hi = float(x.max()) if self.hi is None else max(self.hi, float(x.max()))
            return
        counts, missing = _category_counts(values)
        self.add_categories(counts, missing, max_new, known)

    def add_categories(
        self,
        counts: Mapping[str, int],
        missing: int,
        max_new: int | None = None,
        known: Mapping[str, int] | None = None,
    ) -> None:
        """Categorical `add` of values already counted (count per category in order of appearance, missing)."""
        self.missing += missing
        n_new = 0 if known is None else sum(c not in known for c in self.categories)
        for cat, n in counts.items():
            if cat in self.categories or known is None or max_new is None or cat in known:
                self.categories[cat] = self.categories.get(cat, 0) + n
            elif n_new < max_new:
                self.categories[cat], n_new = n, n_new + 1
            else:
                self.other += n

    def merge(self, other: FeatureProfile) -> None:
        """Add another profile of the same feature (same bins) in place."""
        if self.kind != other.kind or (self.kind == NUMERIC and list(self.edges) != list(other.edges)):
            raise ValueError("cannot merge drift profiles with different kinds or bins")
        self.missing += other.missing
        if self.kind == NUMERIC:
            self.counts = [a + b for a, b in zip(self.counts, other.counts)]
            self.lo = _extreme(min, self.lo, other.lo)
            self.hi = _extreme(max, self.hi, other.hi)
        else:
            for cat, n in other.categories.items():
                self.categories[cat] = self.categories.get(cat, 0) + n
            self.other += other.other


def reference_feature(values: Values, group: str, settings: ProfileSettings) -> FeatureProfile:
    """The reference profile of one feature: quantile cut points (numeric) or its most frequent categories."""
    if group not in GROUPS:
        raise ValueError(f"drift feature group {group!r}: expected one of {GROUPS}")
    if kind_of(values) == NUMERIC:
        x = _floats(values)
        finite = x[np.isfinite(x)]
        qs = np.quantile(finite, np.linspace(0, 1, settings.bins + 1)[1:-1]) if finite.size else np.zeros(0)
        profile = FeatureProfile(NUMERIC, group, edges=[float(e) for e in np.unique(qs)])
        profile.counts = [0] * (len(profile.edges) + 1)
    else:
        profile = FeatureProfile(CATEGORICAL, group, categories={})
    profile.add(values)
    if profile.kind == CATEGORICAL:  # most frequent first; beyond max_categories pooled in `other`
        ranked = sorted(profile.categories.items(), key=lambda kv: (-kv[1], kv[0]))
        profile.categories = dict(ranked[: settings.max_categories])
        profile.other = sum(n for _, n in ranked[settings.max_categories :])
    return profile


@dataclass
class Profile:
    """Named feature profiles + free-form metadata (what the reference was built from); plain JSON on disk."""

    features: dict[str, FeatureProfile]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "meta": self.meta,
            "features": {k: {n: v for n, v in asdict(f).items() if v is not None} for k, f in self.features.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "drift profile") -> Profile:
        if d.get("format") != FORMAT or d.get("version") != VERSION:
            raise ValueError(
                f"{source}: not a {FORMAT} version {VERSION} (format {d.get('format')!r}, version {d.get('version')!r})"
            )
        return cls({k: FeatureProfile(**v) for k, v in d["features"].items()}, dict(d.get("meta") or {}))

    def save(self, path: str | Path) -> Path:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1, ensure_ascii=False), encoding="utf-8")
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> Profile:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")), str(path))

    def merge(self, other: Profile) -> Profile:
        """Add another run's counts (same reference) in place; returns self."""
        for name, feature in other.features.items():
            if name in self.features:
                self.features[name].merge(feature)
            else:
                self.features[name] = feature
        return self


def reference_profile(
    values: Mapping[str, tuple[str, Values]], settings: ProfileSettings, meta: Mapping[str, Any] | None = None
) -> Profile:
    """Reference profile from `{feature: (group, values)}` (a column, or a derived series such as events per
    customer); the kind follows the dtype (numbers -> numeric, anything else -> categorical)."""
    return Profile(
        {name: reference_feature(v, group, settings) for name, (group, v) in values.items()}, dict(meta or {})
    )


class ProfileAccumulator:
    """Counts of a scoring run in the reference's bins, fed partition by partition (`add`), read with `profile()`.
    Features the reference does not know are ignored; a reference feature never fed stays at zero rows."""

    def __init__(self, reference: Profile, max_new_categories: int = 50):
        self.reference, self.max_new = reference, int(max_new_categories)
        self.current = Profile(
            {k: f.empty() for k, f in reference.features.items()}, {"reference": dict(reference.meta)}
        )

    def add(self, values: Mapping[str, Values]) -> None:
        """Count one partition: `{feature: values}`."""
        self.add_counts(self.count(self.reference, values))

    @staticmethod
    def count(reference: Profile, values: Mapping[str, Values]) -> dict[str, FeatureProfile]:
        """One partition's `{feature: values}` counted in the reference's bins, categories not yet capped: small,
        so a worker process can count its partition and send only the counts (`add_counts`)."""
        counts = {}
        for name, v in values.items():
            ref = reference.features.get(name)
            if ref is not None:
                counts[name] = ref.empty()
                counts[name].add(v)
        return counts

    def add_counts(self, counts: Mapping[str, FeatureProfile]) -> None:
        """Add one partition's `count`: the same result as `add` of its values."""
        for name, part in counts.items():
            ref, current = self.reference.features[name], self.current.features[name]
            if current.kind == NUMERIC:
                current.merge(part)
            else:
                current.add_categories(part.categories, part.missing, self.max_new, ref.categories)

    def profile(self) -> Profile:
        return self.current


# ------------------------------------------------------------------------------------------------- comparison
@dataclass
class FeatureDrift:
    """One feature's comparison. `status`: drift | ok | no data (never fed) | too few rows (< min_rows)."""

    name: str
    kind: str
    group: str
    statistic: str
    value: float | None
    threshold: float
    drifted: bool
    status: str
    rows_reference: int
    rows_current: int
    missing_reference: float
    missing_current: float
    new_categories: list[dict[str, Any]]
    new_share: float
    bins: list[dict[str, Any]]  # every bin: label, reference share, current share
    top_shifted: list[dict[str, Any]]


@dataclass
class DriftReport:
    features: list[FeatureDrift]
    summary: dict[str, Any]

    @property
    def drifted(self) -> list[str]:
        return [f.name for f in self.features if f.drifted]

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary, "features": [asdict(f) for f in self.features]}


def psi(reference: np.ndarray, current: np.ndarray, epsilon: float) -> float:
    """Population stability index of two count vectors over the same bins (shares floored at `epsilon`)."""
    r = np.maximum(reference / max(reference.sum(), 1), epsilon)
    c = np.maximum(current / max(current.sum(), 1), epsilon)
    return float(np.sum((c - r) * np.log(c / r)))


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _bins(ref: FeatureProfile, cur: FeatureProfile) -> tuple[list[str], np.ndarray, np.ndarray, list[str]]:
    """(labels, reference counts, current counts, new categories) over shared bins (+ other, + missing)."""
    if ref.kind == NUMERIC:
        cuts = ["-inf", *(_fmt(e) for e in ref.edges), "inf"]
        labels = [f"[{a}, {b})" for a, b in itertools.pairwise(cuts)]
        r, c = np.asarray(ref.counts, float), np.asarray(cur.counts, float)
        new: list[str] = []
    else:
        known = list(ref.categories)
        unknown = [k for k in cur.categories if k not in ref.categories]
        pooled = ref.other > 0  # a truncated reference cannot tell a new category from a rare one
        new = [] if pooled else sorted(unknown, key=lambda k: -cur.categories[k])
        other_cur = cur.other + (sum(cur.categories[k] for k in unknown) if pooled else 0)
        with_other = int(bool(ref.other or other_cur))  # the (other) bin: pooled tails of both sides
        labels = known + [OTHER] * with_other + new
        r = np.asarray([ref.categories[k] for k in known] + [ref.other] * with_other + [0] * len(new), float)
        c = np.asarray(
            [cur.categories.get(k, 0) for k in known] + [other_cur] * with_other + [cur.categories[k] for k in new],
            float,
        )
    return labels + [MISSING], np.append(r, ref.missing), np.append(c, cur.missing), new


def compare_feature(name: str, ref: FeatureProfile, cur: FeatureProfile, thresholds: DriftThresholds) -> FeatureDrift:
    """PSI of one feature (+ the new-category rule for categorical ones)."""
    labels, r, c, new_names = _bins(ref, cur)
    n_ref, n_cur = int(r.sum()), int(c.sum())
    threshold = thresholds.psi_for(name)
    rs, cs = r / max(n_ref, 1), c / max(n_cur, 1)
    new = [
        {"category": k, "rows": int(cur.categories[k]), "share": cur.categories[k] / max(n_cur, 1)} for k in new_names
    ]
    unnamed = cur.other if ref.kind == CATEGORICAL and ref.other == 0 else 0  # unknown, beyond max_new_categories
    new_share = float(sum(d["rows"] for d in new) + unnamed) / max(n_cur, 1)
    if n_cur == 0 or n_ref == 0:
        value, status = None, "no data"
    elif n_cur < thresholds.min_rows:
        value, status = psi(r, c, thresholds.epsilon), "too few rows"
    else:
        value = psi(r, c, thresholds.epsilon)
        status = "drift" if value > threshold or new_share >= thresholds.new_category_share else "ok"
    bins = [{"label": lab, "reference": float(a), "current": float(b)} for lab, a, b in zip(labels, rs, cs)]
    top = sorted(bins, key=lambda b: -abs(b["current"] - b["reference"]))[:3] if n_cur and n_ref else []
    return FeatureDrift(
        name,
        ref.kind,
        ref.group,
        "psi",
        value,
        threshold,
        status == "drift",
        status,
        n_ref,
        n_cur,
        float(rs[-1]),
        float(cs[-1]),
        new,
        new_share,
        bins,
        top,
    )


def compare(reference: Profile, current: Profile, thresholds: DriftThresholds) -> DriftReport:
    """Every reference feature compared; sorted by PSI (drifted first). The run fails when the share of drifted
    features among those with enough rows exceeds `max_drifted_share`."""
    results = [
        compare_feature(name, ref, current.features.get(name, ref.empty()), thresholds)
        for name, ref in reference.features.items()
    ]
    results.sort(key=lambda f: (not f.drifted, -(f.value if f.value is not None else -math.inf), f.name))
    tested = [f for f in results if f.status in ("ok", "drift")]
    drifted = [f.name for f in results if f.drifted]
    share = len(drifted) / len(tested) if tested else 0.0
    summary = {
        "features": len(results),
        "tested": len(tested),
        "drifted": len(drifted),
        "drifted_share": share,
        "drifted_features": drifted,
        "passed": share <= thresholds.max_drifted_share,
        "untested": {f.name: f.status for f in results if f.status not in ("ok", "drift")},
        "thresholds": dict(asdict(thresholds).items()),
    }
    return DriftReport(results, summary)
