"""``gramweight.jacobian`` and ``gramweight.monitor`` against plain autograd and hand values."""

from __future__ import annotations

import pytest
import torch

import gramweight as gw

DT = torch.float64


def model_and_losses():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    model = model.to(DT)
    x = torch.randn(6, 3, dtype=DT)
    return model, lambda: torch.stack([model(x)[:, 0].pow(2).mean(), model(x)[:, 1].sin().mean(),
                                       model(x).sum()])


def test_jacobian_gramian_and_update_equal_plain_autograd():
    model, losses_fn = model_and_losses()
    params = list(model.parameters())
    J = gw.jacobian.of(losses_fn(), params)
    for i in range(3):  # each row is that loss's gradient (one autograd.grad per loss)
        for g, Jp in zip(torch.autograd.grad(losses_fn()[i], params), J):
            torch.testing.assert_close(Jp[i], g)
    flat = torch.cat([Jp.reshape(3, -1) for Jp in J], 1)
    torch.testing.assert_close(gw.jacobian.gramian(J), flat @ flat.T)
    torch.testing.assert_close(gw.jacobian.gramian(flat), flat @ flat.T)

    w = torch.tensor([0.2, -1.0, 0.5], dtype=DT)
    update = gw.jacobian.combine(J, w)
    model.zero_grad()
    losses_fn().backward(w)  # the reference update: backward with w as the cotangent
    for u, p in zip(update, params):
        torch.testing.assert_close(u, p.grad)
    torch.testing.assert_close(gw.jacobian.combine(flat, w),
                               torch.cat([u.reshape(-1) for u in update]))
    torch.testing.assert_close(gw.jacobian.combine(flat, gw.upgrad),
                               gw.upgrad(flat @ flat.T) @ flat)

    expected = [p.grad.clone() for p in params]
    model.zero_grad(set_to_none=True)
    gw.jacobian.write_grad(params, gw.jacobian.combine(flat, w))
    gw.jacobian.write_grad(params, update)  # accumulates, as backward does
    for p, e in zip(params, expected):
        torch.testing.assert_close(p.grad, 2 * e)
    gw.jacobian.write_grad(params, update, accumulate=False)
    for p, e in zip(params, expected):
        torch.testing.assert_close(p.grad, e)


def test_jacobian_helpers_refuse_bad_input():
    with pytest.raises(ValueError, match=r"^`J` must be floating-point tensors with the same "
                                         r"number of rows"):
        gw.jacobian.gramian([torch.ones(2, 3), torch.ones(3, 3)])
    with pytest.raises(ValueError, match=r"^`J` must be of shape \(m, n\) when it is one tensor"):
        gw.jacobian.gramian(torch.ones(2, 3, 4))
    with pytest.raises(ValueError, match=r"^`weights` must be of shape \(2,\)"):
        gw.jacobian.combine(torch.ones(2, 3), torch.ones(3))
    p = torch.nn.Parameter(torch.ones(2, 2))
    with pytest.raises(ValueError, match=r"^`update` must be a flat vector of the parameters' "
                                         r"total size \(4\)"):
        gw.jacobian.write_grad([p], torch.ones(5))


def test_monitor_values_by_hand():
    # g1 = (2, 0), g2 = (-1, 1), g3 = (0, 0)
    G = torch.tensor([[4.0, -2.0, 0.0], [-2.0, 2.0, 0.0], [0.0, 0.0, 0.0]], dtype=DT)
    cos = gw.monitor.cosine_similarity(G)
    torch.testing.assert_close(cos, torch.tensor([[1.0, -2 / (2 * 2 ** 0.5), 0.0],
                                                  [-2 / (2 * 2 ** 0.5), 1.0, 0.0],
                                                  [0.0, 0.0, 0.0]], dtype=DT))
    assert gw.monitor.conflicts(G).tolist() == [[False, True, False], [True, False, False],
                                                [False, False, False]]
    w = torch.tensor([1.0, 1.0, 0.0], dtype=DT)  # update (1, 1): norm sqrt(2)
    s = gw.monitor.summary(G, w)
    assert s["conflicting_pairs"] == 1 and s["increases"] == []
    assert s["gradient_norms"] == pytest.approx([2.0, 2 ** 0.5, 0.0])
    assert s["update_norm"] == pytest.approx(2 ** 0.5)
    assert s["alignment"] == pytest.approx([2.0, 0.0, 0.0])  # (1,1)·(2,0), (1,1)·(-1,1)
    stacked = gw.monitor.summary(torch.stack([G, 2 * G]), torch.stack([w, w]))
    assert stacked["update_norm"] == pytest.approx([2 ** 0.5, 2.0])
    torch.testing.assert_close(gw.monitor.update_norm(torch.stack([G, 2 * G]), torch.stack([w, w])),
                               torch.tensor([2 ** 0.5, 2.0], dtype=DT))


def test_the_other_error_paths_name_the_argument():
    p = torch.nn.Parameter(torch.ones(2, 2))
    with pytest.raises(ValueError, match=r"^`update` must be one tensor per parameter, of its "
                                         r"shape, got 2 tensors for 1 parameters\.$"):
        gw.jacobian.write_grad([p], [torch.ones(2, 2), torch.ones(2)])
    with pytest.raises(ValueError, match=r"^`losses` must be a tensor that requires grad"):
        gw.jacobian.of(torch.ones(3), [p])
    with pytest.raises(TypeError, match=r"^`J` must be a tensor \(m, n\) or a non-empty "
                                        r"sequence of tensors"):
        gw.jacobian.gramian([])
    with pytest.raises(ValueError, match=r"^`G` must be a Gramian \(m, m\) or a stack of them "
                                         r"\(K, m, m\), got shape \(2, 3\)\.$"):
        gw.monitor.cosine_similarity(torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"^`w` must be of shape \(2,\), got shape \(3,\)\.$"):
        gw.monitor.summary(torch.eye(2), torch.ones(3))
    with pytest.raises(TypeError, match=r"^`scaler` must be a torch.amp.GradScaler \(with "
                                        r"get_scale\(\)\), got float\.$"):
        gw.autogram.unscale(torch.eye(2), 2.0)
