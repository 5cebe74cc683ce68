"""ChurnNet components on random contract batches: shapes, masking, empty histories, missing branches."""

from __future__ import annotations

import math

import pytest
import torch

from churnsense.churn.examples import random_arrays
from churnsense.churn.hazard import hazard_loss, hazard_targets, horizon_probabilities
from churnsense.churn.net import ChurnNet
from churnsense.churn.sequence import SequenceEncoder
from churnsense.churn.tabular import TabularEncoder


def as_batch(arrays):
    return {k: torch.as_tensor(v) for k, v in arrays.items()}


def make_net(kind="gru", cards=(3, 5), n_num=4, seq=True, horizons=(30, 60, 90), numeric="periodic"):
    tab = (
        TabularEncoder(list(cards), n_num, d_token=4, hidden_dim=8, numeric_embedding=numeric)
        if len(cards) + n_num
        else None
    )
    sequence = SequenceEncoder(6, kind, d_model=8, n_layers=2, n_heads=2) if seq else None
    return ChurnNet(tab, sequence, hidden_dim=8, hazard_horizons=list(horizons) or None)


@pytest.mark.parametrize("kind", ["gru", "transformer"])
def test_forward_backward_finite_with_empty_histories(kind):
    torch.manual_seed(0)
    batch = as_batch(random_arrays(n=12, empty_fraction=0.0))
    batch["seq_mask"][:3] = False  # three customers without any event
    net = make_net(kind)
    out = net(batch)
    assert out["logit"].shape == (12,) and out["hazard_logits"].shape == (12, 3)
    loss = out["logit"].sum() + hazard_loss(
        out["hazard_logits"], net.hazard.edges, batch["ttc_days"], batch["followup_days"]
    )
    loss.backward()
    assert torch.isfinite(out["logit"]).all()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


@pytest.mark.parametrize("kind", ["gru", "transformer"])
def test_padding_does_not_leak(kind):
    """Values in padded slots, and extra padding, must not change the output."""
    torch.manual_seed(0)
    net = make_net(kind).eval()
    batch = as_batch(random_arrays(n=6))
    noisy = {k: v.clone() for k, v in batch.items()}
    pad = ~noisy["seq_mask"]
    noisy["seq_value"][pad] = 123.0
    noisy["seq_dt"][pad] = -7.0
    longer = {
        k: (torch.cat([v, torch.zeros_like(v[:, :3])], 1) if k.startswith("seq_") else v) for k, v in batch.items()
    }
    with torch.no_grad():
        ref = net(batch)["logit"]
        assert torch.allclose(ref, net(noisy)["logit"], atol=1e-5)
        assert torch.allclose(ref, net(longer)["logit"], atol=1e-5)


def test_empty_history_uses_learned_vector():
    enc = SequenceEncoder(6, "gru", d_model=8).eval()
    batch = as_batch(random_arrays(n=4))
    batch["seq_mask"][:] = False
    out = enc(batch)
    assert torch.allclose(out, enc.pool.no_history.repeat(4, 2))


@pytest.mark.parametrize("cards,n_num,seq", [((), 0, True), ((3, 5), 4, False), ((), 3, True), ((4,), 0, True)])
def test_missing_branches(cards, n_num, seq):
    arrays = random_arrays(n=5, cat_cardinalities=cards, n_numeric=n_num, n_event_types=6 if seq else 0)
    out = make_net(cards=cards, n_num=n_num, seq=seq, horizons=())(as_batch(arrays))
    assert out["logit"].shape == (5,) and "hazard_logits" not in out
    with pytest.raises(ValueError):
        ChurnNet(None, None)


def test_unknown_and_out_of_range_categories_fall_into_bucket_zero():
    tab = TabularEncoder([3, 5], 0, d_token=4, hidden_dim=8).eval()
    base = torch.tensor([[0, 0]])
    odd = torch.tensor([[7, -2]])
    assert torch.allclose(tab({"cat": base}), tab({"cat": odd}))


def test_linear_numeric_embedding():
    net = make_net(numeric="linear")
    assert net(as_batch(random_arrays(n=3)))["logit"].shape == (3,)
    with pytest.raises(ValueError):
        TabularEncoder([], 2, numeric_embedding="nope")


def test_hazard_targets_and_probabilities():
    edges = torch.tensor([0.0, 30.0, 60.0, 90.0])
    ttc = torch.tensor([45.0, float("nan"), float("nan"), 200.0])
    follow = torch.tensor([100.0, 70.0, float("nan"), 300.0])
    targets, weights = hazard_targets(edges, ttc, follow)
    assert targets.tolist() == [[0, 1, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]]
    assert weights.tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 0], [1, 1, 1]]
    p = horizon_probabilities(torch.randn(4, 3))
    assert (p.diff(dim=1) >= 0).all() and ((p >= 0) & (p <= 1)).all()


def test_ensemble_members_train_separately_and_average():
    """k members share the fusion MLP: `logit` is their mean, each member has its own output (and hazard) head."""
    torch.manual_seed(0)
    tab = TabularEncoder([3, 5], 4, d_token=4, hidden_dim=8)
    net = ChurnNet(tab, SequenceEncoder(6, "gru", d_model=8), hidden_dim=8, hazard_horizons=[30, 60], ensemble_size=4)
    out = net(as_batch(random_arrays(n=7)))
    assert out["member_logits"].shape == (7, 4) and out["member_hazard_logits"].shape == (7, 4, 2)
    assert torch.allclose(out["logit"], out["member_logits"].mean(1))
    assert torch.allclose(out["hazard_logits"], out["member_hazard_logits"].mean(1))
    assert out["member_logits"].std(1).min() > 0  # members differ (own input scaling and heads)
    single = ChurnNet(tab, None, hidden_dim=8)
    assert single.fusion.scale is None and single(as_batch(random_arrays(n=3)))["member_logits"].shape == (3, 1)


def test_piecewise_linear_embedding_encodes_thresholds():
    from churnsense.churn.tabular import PiecewiseLinearEmbedding, quantile_bins

    x = torch.tensor([[0.0, 5.0], [1.0, 5.0], [2.5, 5.0], [9.0, 5.0]])
    bins = quantile_bins(x.numpy(), n_bins=4)
    assert bins[1] == [5.0, 6.0] and bins[0][0] == 0.0 and bins[0][-1] == 9.0  # constant column: one unit bin
    emb = PiecewiseLinearEmbedding(bins, d_token=3)
    z = emb.encode(x)
    assert torch.all((z[:, 0, 1:-1] >= 0) & (z[:, 0, 1:-1] <= 1))  # inner bins are clamped
    assert z[0, 0, 0] == 0 and z[-1, 0, -1] == 1  # first bin starts at the minimum, the last is full at the max
    assert torch.all(z[:, 1, 1:] == 0)  # padded bins of a one-bin column stay zero
    assert emb(torch.tensor([[100.0, -100.0]])).shape == (1, 2, 3)  # out of range: finite (open outer bins)
    with pytest.raises(ValueError, match="bin edges"):
        TabularEncoder([], 2, numeric_embedding="piecewise")
    tab = TabularEncoder([3], 2, d_token=4, hidden_dim=8, numeric_embedding="piecewise", bins=bins)
    assert tab({"cat": torch.zeros(4, 1, dtype=torch.long), "num": x}).shape == (4, 8)


def test_event_window_stats_count_types_in_windows():
    """With sharp windows the statistics are plain counts, value means and recency per event type."""
    from churnsense.churn.event_windows import EventWindowStats

    stats = EventWindowStats(4, window_days=[10, 100], d_out=3, sharpness_days=1e-3)
    days = torch.tensor([[200.0, 50.0, 5.0, 2.0, 0.0]])
    seq_type = torch.tensor([[2, 2, 3, 2, 0]])  # last slot is padding
    seq_value = torch.tensor([[1.0, 2.0, 4.0, 3.0, 99.0]])
    mask = torch.tensor([[True, True, True, True, False]])
    s = stats.statistics(seq_type, seq_value, torch.log1p(days), mask)
    assert torch.allclose(s["counts"][0, 2], torch.tensor([1.0, 2.0]), atol=1e-4)  # type 2: 2 days; 2 and 50 days
    assert torch.allclose(s["counts"][0, 3], torch.tensor([1.0, 1.0]), atol=1e-4)
    assert torch.allclose(s["means"][0, 2, 1], torch.tensor((2.0 + 3.0) / 3.0), atol=1e-4)
    assert torch.allclose(s["recency"][0], torch.tensor([0.0, 0.0, math.log1p(2.0), math.log1p(5.0)]), atol=1e-5)
    assert s["present"][0].tolist() == [0.0, 0.0, 1.0, 1.0]
    assert stats(seq_type, seq_value, torch.log1p(days), mask).shape == (1, 3)


def test_piecewise_embedding_clamps_outside_the_training_range_unless_open():
    from churnsense.churn.tabular import PiecewiseLinearEmbedding

    torch.manual_seed(0)
    closed = PiecewiseLinearEmbedding([[0.0, 1.0, 2.0]], d_token=32, open_ends=False)
    opened = PiecewiseLinearEmbedding([[0.0, 1.0, 2.0]], d_token=32, open_ends=True)
    opened.linear.load_state_dict(closed.linear.state_dict())
    x = torch.tensor([[2.0], [5.0], [0.0], [-3.0]])
    c, o = closed(x), opened(x)
    assert torch.allclose(c[0], c[1]) and torch.allclose(c[2], c[3])  # beyond the range = the range's end
    assert not torch.allclose(o[0], o[1])


def test_piecewise_encoding_is_the_masked_clamp_of_each_bin():
    """The bounds form gives exactly the reference encoding: inner bins clamped to [0, 1], outer bins open (or
    clamped without open ends), padding bins of a feature with fewer edges 0."""
    from churnsense.churn.tabular import PiecewiseLinearEmbedding

    bins = [[0.0, 1.0, 2.0, 4.0, 8.0], [-1.0, 1.0], [0.0, 0.5, 3.0]]
    x = torch.tensor([[-5.0, -3.0, -1.0], [0.3, 0.0, 0.7], [3.0, 0.9, 2.9], [50.0, 7.0, 9.0]])
    for open_ends in (True, False):
        emb = PiecewiseLinearEmbedding(bins, d_token=2, open_ends=open_ends)
        expected = torch.zeros(len(x), len(bins), 4)
        for j, edges in enumerate(bins):
            for t in range(len(edges) - 1):
                z = (x[:, j] - edges[t]) / (edges[t + 1] - edges[t])
                if t > 0 or not open_ends:
                    z = z.clamp(min=0.0)
                if t < len(edges) - 2 or not open_ends:
                    z = z.clamp(max=1.0)
                expected[:, j, t] = z
        assert torch.equal(emb.encode(x), expected)
