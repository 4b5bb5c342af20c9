"""Small CPU problems run on Python floats (``gramweight._host``, the checks' host path, the
two-task closed forms of PCGrad and GradVac); larger ones on tensors. Here every such method
runs the same drawn inputs through both paths (the threshold patched to 0) and must agree."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import gramweight as gw
import gramweight._host as host
from gramweight.testing.strategies import gramians


def both_paths(fn):
    """``fn()`` with the host paths enabled, then with every problem sent to tensors."""
    small = fn()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(host, "HOST_NUMEL", 0)
        large = fn()
    return small, large


def close(a, b, scale=1.0):
    # float64 paths agree to round-off; float32 ones to its precision
    eps = torch.finfo(a.dtype).eps
    return torch.allclose(a, b, rtol=1e3 * eps, atol=1e3 * eps * scale)


@given(G=gramians(m=st.integers(1, 8)), gamma=st.sampled_from([0.01, 0.1, 1.0]))
def test_modo(G, gamma):
    state = gw.modo_init(G.shape[0], dtype=G.dtype)
    scale = float(G.abs().max()) * gamma + 1.0
    (w1, s1), (w2, s2) = both_paths(lambda: gw.modo(G, state, gamma=gamma))
    assert close(w1, w2, scale) and close(s1.weights, s2.weights, scale)


@given(G=gramians(m=st.integers(1, 8), scaled=False), lambda_=st.sampled_from([0.0, 0.3]))
def test_sdmgrad(G, lambda_):
    state = gw.sdmgrad_init(G.shape[0], dtype=G.dtype)
    # 3 iterations: projected steps amplify round-off, so a long run compares chaos
    (w1, s1), (w2, s2) = both_paths(
        lambda: gw.sdmgrad(G, state, n_iters=3, lambda_=lambda_)
    )
    assert close(w1, w2, 10.0) and close(s1.weights, s2.weights, 10.0)


@pytest.mark.parametrize("name", ["imtl_g", "config", "aligned_mtl", "mean", "upgrad", "mgda"])
@given(G=gramians(m=st.integers(1, 8)))
def test_checks_give_the_same_matrix(name, G):
    # The check's host path and its tensor reductions accept, repair and pass on the same G.
    w1, w2 = both_paths(lambda: gw.WEIGHTINGS[name](G))
    assert torch.equal(w1, w2) or close(w1, w2)


@given(
    G=gramians(m=st.integers(3, 8), dtype=torch.float64),
    f=st.integers(0, 5),
    selected=st.integers(1, 8),
)
def test_krum(G, f, selected):
    m = G.shape[0]
    f, selected = min(f, m - 3), min(selected, m)
    w1, w2 = both_paths(lambda: gw.krum(G, n_byzantine=f, n_selected=selected))
    if torch.equal(w1, w2):
        return
    # the paths round the distances differently: they may only differ on scores tied to
    # round-off, and then pick as many gradients
    assert int((w1 > 0).sum()) == int((w2 > 0).sum()) == selected
    d = G.diagonal()
    dist2 = d.unsqueeze(1) + d - 2 * G
    scores = dist2.sort(dim=1).values[:, : m - f - 1].sum(dim=1)
    picked1, picked2 = scores[w1 > 0].sort().values, scores[w2 > 0].sort().values
    assert torch.allclose(picked1, picked2, rtol=1e-9, atol=1e-9 * float(G.abs().max()))
