"""Relative-risk uplift learner: an action removes a share of the customer's churn risk, and that share depends on
why the customer is at risk.

    P(churn | x, untreated) = mu0(x) = sigmoid(a + b * logit(risk(x)))
    P(churn | x, treated)   = mu0(x) * (1 - rho(x)),   rho(x) = sum_g s_g(x) * beta_g + (1 - sum_g s_g(x)) * beta_0
    uplift tau(x)           = mu0(x) * rho(x)

`risk(x)` is the churn model's own probability over the offer's outcome window and `s_g(x)` the share of the
customer's risk-raising attribution that falls on reason group g (`uplift_modifiers`): effect modification on the
relative scale by the model's risk and reasons (relative risk reduction per cause, as in epidemiology's
cause-specific efficacy), a handful of parameters per action instead of a free-form function of every fact, so a
few thousand logged offers with a ~20 % outcome rate can fit it. `mu0` recalibrates the model's risk to the logged
population's untreated outcome; the `beta`s are shrunk towards the common `beta_0` (penalty `penalty`, in
pseudo-observations): with no evidence that the effect differs by reason, the action removes the same share of
everyone's risk. Fitted by maximum likelihood of both arms at once (L-BFGS-B, each `beta` in [`lower`, 1]).

It is an outcome model, like the T-learner: in a randomised log it needs no propensity; in an observational one it
is as good as its conditioning on risk and reasons (no propensity weighting). Rows without a risk are not
predicted (NaN); rows without attributions (all shares 0 or missing) get `beta_0`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, logit

EPS = 1e-6


def _logit_risk(risk: np.ndarray) -> np.ndarray:
    return logit(np.clip(np.asarray(risk, dtype=np.float64), 1e-4, 1 - 1e-4))


class RelativeRiskLearner:
    """One action's relative-risk effect model over the columns `risk` (index into x) and `shares` (indices)."""

    kind = "rr"

    def __init__(
        self, risk: int, shares: Sequence[int], penalty: float = 20.0, lower: float = -1.0, names: Sequence[str] = ()
    ) -> None:
        self.risk, self.shares = int(risk), [int(i) for i in shares]
        self.penalty, self.lower, self.names = float(penalty), float(lower), list(names)
        self.theta: np.ndarray | None = None  # a, b, beta_0, beta_1..G

    def _inputs(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = np.nan_to_num(np.clip(np.asarray(x[:, self.shares], dtype=np.float64), 0.0, 1.0))
        return _logit_risk(np.nan_to_num(x[:, self.risk], nan=0.5)), s

    @staticmethod
    def _rho(s: np.ndarray, beta0: float, beta: np.ndarray) -> np.ndarray:
        return s @ beta + (1.0 - s.sum(axis=1)) * beta0

    def _loss(
        self, theta: np.ndarray, z: np.ndarray, s: np.ndarray, t: np.ndarray, y: np.ndarray
    ) -> tuple[float, np.ndarray]:
        """Penalised mean negative log-likelihood and its gradient in theta."""
        a, b, beta0, beta = theta[0], theta[1], theta[2], theta[3:]
        n, rest = len(y), 1.0 - s.sum(axis=1)
        mu0 = expit(a + b * z)
        keep = 1.0 - t * self._rho(s, beta0, beta)
        q = np.clip(mu0 * keep, EPS, 1 - EPS)
        nll = -np.mean(y * np.log(q) + (1 - y) * np.log1p(-q))
        dq = -(y / q - (1 - y) / (1 - q)) / n  # d nll / d q per row
        d_mu = dq * mu0 * (1 - mu0) * keep
        d_rho = -dq * t * mu0
        diff = beta - beta0
        grad = np.concatenate(
            [
                [d_mu.sum(), (d_mu * z).sum(), (d_rho * rest).sum() - 2 * self.penalty * diff.sum() / n],
                s.T @ d_rho + 2 * self.penalty * diff / n,
            ]
        )
        return float(nll + self.penalty * np.sum(diff**2) / n), grad

    def fit(self, x: np.ndarray, t: np.ndarray, y: np.ndarray, design_propensity: bool = True) -> RelativeRiskLearner:
        """Maximum likelihood on rows `x` with treatment flags `t` and churn outcomes `y` (see module doc);
        `design_propensity` is accepted for the common learner interface and not needed."""
        t, y = np.asarray(t, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if t.all() or not t.any():
            raise ValueError("uplift: a contrast needs treated and untreated rows")
        z, s = self._inputs(x)
        g = s.shape[1]
        start = np.r_[0.0, 1.0, 0.0, np.zeros(g)]
        bounds = [(None, None), (0.0, 10.0)] + [(self.lower, 1.0)] * (g + 1)
        res = minimize(self._loss, start, args=(z, s, t, y), method="L-BFGS-B", jac=True, bounds=bounds)
        self.theta = res.x
        return self

    def untreated_risk(self, x: np.ndarray) -> np.ndarray:
        """mu0(x): the recalibrated churn probability without an offer."""
        z, _ = self._inputs(x)
        return expit(self.theta[0] + self.theta[1] * z)

    def relative_effect(self, x: np.ndarray) -> np.ndarray:
        """rho(x): the share of the customer's churn risk an offer removes."""
        _, s = self._inputs(x)
        return self._rho(s, self.theta[2], self.theta[3:])

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Churn reduction tau(x) per row (NaN where the risk is missing)."""
        tau = self.untreated_risk(x) * self.relative_effect(x)
        return np.where(np.isnan(np.asarray(x[:, self.risk], dtype=np.float64)), np.nan, tau)

    def coefficients(self) -> dict[str, float]:
        """Readable parameters: calibration (a, b), the common relative effect and one per reason share."""
        names = self.names[1:] if len(self.names) == len(self.shares) + 1 else [str(i) for i in self.shares]
        return {
            "a": float(self.theta[0]),
            "b": float(self.theta[1]),
            "beta_0": float(self.theta[2]),
            **{n: float(v) for n, v in zip(names, self.theta[3:])},
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "risk": self.risk,
            "shares": self.shares,
            "penalty": self.penalty,
            "lower": self.lower,
            "names": self.names,
            "theta": [float(v) for v in self.theta] if self.theta is not None else None,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RelativeRiskLearner:
        out = cls(d["risk"], d["shares"], d["penalty"], d["lower"], d.get("names") or ())
        out.theta = np.asarray(d["theta"], dtype=np.float64) if d.get("theta") is not None else None
        return out
