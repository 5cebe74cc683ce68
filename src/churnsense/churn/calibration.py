"""Temperature scaling fitted on validation logits: p = sigmoid((logit - offset) / T).

`offset` = log(pos_weight) is the known shift that class weighting puts on the logit; it is fixed, and only T is
fitted (LBFGS on the validation log loss, T parametrised as exp(t) so it stays positive).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, offset: float = 0.0, max_iter: int = 100) -> float:
    """Temperature T > 0 minimising the NLL of sigmoid((logits - offset) / T) on (logits, labels)."""
    z = logits.detach().double() - offset
    y = labels.detach().double()
    if z.numel() == 0 or y.min() == y.max():
        return 1.0  # nothing to calibrate against
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp())
    return t if torch.isfinite(torch.tensor(t)) and 1e-2 <= t <= 1e2 else 1.0


def calibrated_probs(logits: torch.Tensor, temperature: float = 1.0, offset: float = 0.0) -> torch.Tensor:
    """Calibrated churn probability (the same formula as the exported graph)."""
    return torch.sigmoid((logits.float() - offset) / temperature)
