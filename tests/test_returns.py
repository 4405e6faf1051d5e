import torch

from dmrl.rl.returns import discounted_returns, gae, masked_mean, normalize_per_task


def loop_returns(r, m, g):
    out = torch.zeros_like(r)
    for idx in range(r.shape[1]):
        running = 0.0
        for t in reversed(range(r.shape[0])):
            running = (r[t, idx] + g * running) * m[t, idx]
            out[t, idx] = running
    return out


def loop_gae(r, v, m, g, lam):
    T, B = r.shape
    adv = torch.zeros_like(r)
    for b in range(B):
        running = 0.0
        for t in reversed(range(T)):
            if m[t, b] == 0:
                running = 0.0
                continue
            nv = v[t + 1, b] if t + 1 < T and m[t + 1, b] > 0 else 0.0
            delta = r[t, b] + g * nv - v[t, b]
            running = delta + g * lam * running
            adv[t, b] = running
    return adv


def test_discounted_returns_by_hand():
    r = torch.tensor([[1.0], [2.0], [3.0]])
    m = torch.ones(3, 1)
    out = discounted_returns(r, m, 0.5)
    assert torch.allclose(out[:, 0], torch.tensor([1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3.0]))


def test_returns_and_gae_match_loops_with_masks():
    g = torch.Generator().manual_seed(0)
    T, B = 12, 5
    r = torch.randn(T, B, generator=g)
    v = torch.randn(T, B, generator=g)
    lengths = torch.tensor([12, 7, 1, 3, 10])
    m = (torch.arange(T)[:, None] < lengths[None]).float()
    assert torch.allclose(discounted_returns(r, m, 0.9), loop_returns(r, m, 0.9), atol=1e-5)
    for lam in (0.0, 0.95, 1.0):
        assert torch.allclose(gae(r, v, m, 0.99, lam), loop_gae(r, v, m, 0.99, lam), atol=1e-5)


def test_gae_lambda_one_is_returns_minus_values():
    g = torch.Generator().manual_seed(1)
    r, v = torch.randn(9, 3, generator=g), torch.randn(9, 3, generator=g)
    m = torch.ones(9, 3)
    m[6:, 1] = 0
    expected = (discounted_returns(r, m, 0.97) - v * m)
    assert torch.allclose(gae(r, v, m, 0.97, 1.0), expected, atol=1e-5)


def test_masked_mean_and_per_task_normalization():
    x = torch.tensor([[1.0, 100.0], [3.0, 5.0]])
    m = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert torch.allclose(masked_mean(x, m, (0, 1)), torch.tensor(3.0))
    g = torch.Generator().manual_seed(2)
    adv = torch.randn(6, 3, 4, generator=g) * 5 + 2
    mask = torch.ones(6, 3, 4)
    mask[4:, 0] = 0
    out = normalize_per_task(adv, mask)
    for i in range(3):
        vals = out[:, i][mask[:, i] > 0]
        assert abs(vals.mean().item()) < 1e-5
        assert abs(vals.std(unbiased=False).item() - 1) < 1e-3
    assert (out[mask == 0] == 0).all()
