"""pcgrad: the loop by hand over visiting orders, edge cases, blocks and errors.

Its values on two-task examples are in test_expected_values.py.
"""

import pytest
import torch

import gramweight as gw
from gramweight.testing import assert_pure

G2 = torch.tensor([[18.0, -22.0], [-22.0, 38.0]], dtype=torch.float64)


def test_three_tasks_by_hand():
    # g_0 = (1, 0), g_1 = (-1, 1), g_2 = (0, -1): the order matters, so follow visiting_orders.
    J = torch.tensor([[1.0, 0.0], [-1.0, 1.0], [0.0, -1.0]], dtype=torch.float64)
    G = J @ J.T
    for key in range(6):
        orders = gw.visiting_orders(3, key=key).tolist()
        update = torch.zeros(2, dtype=torch.float64)
        for i in range(3):
            g = J[i].clone()
            for j in orders[i]:
                if g @ J[j] < 0:
                    g = g - (g @ J[j]) / (J[j] @ J[j]) * J[j]
            update += g
        assert torch.allclose(gw.pcgrad(G, key=key) @ J, update, rtol=1e-14, atol=1e-14)


def test_the_order_matters_for_three_tasks():
    J = torch.tensor([[1.0, 0.0], [-1.0, 1.0], [0.0, -1.0]], dtype=torch.float64)
    results = {tuple(gw.pcgrad(J @ J.T, key=k).tolist()) for k in range(30)}
    assert len(results) > 1


def test_same_key_same_weights():
    J = torch.randn(6, 9, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.equal(gw.pcgrad(J @ J.T, key=5), gw.pcgrad(J @ J.T, key=5))


def test_no_conflict_gives_the_sum():
    G = torch.tensor([[2.0, 1.0, 0.0], [1.0, 3.0, 0.5], [0.0, 0.5, 1.0]], dtype=torch.float64)
    assert torch.equal(gw.pcgrad(G, key=0), torch.ones(3, dtype=torch.float64))


def test_one_task():
    assert torch.equal(gw.pcgrad(torch.tensor([[4.0]]), key=0), torch.tensor([1.0]))


def test_zero_gramian_and_zero_rows():
    assert torch.equal(gw.pcgrad(torch.zeros(3, 3), key=0), torch.ones(3))
    G = torch.tensor([[0.0, 0.0], [0.0, 4.0]], dtype=torch.float64)
    assert torch.equal(gw.pcgrad(G, key=0), torch.ones(2, dtype=torch.float64))


def test_rank_one_opposite_gradients_cancel():
    # g_0 = 1, g_1 = -2 (one parameter): row 0 = g_0 + g_1 / 2 = 0, row 1 = 2 g_0 + g_1 = 0.
    G = torch.tensor([[1.0, -2.0], [-2.0, 4.0]], dtype=torch.float64)
    w = gw.pcgrad(G, key=0)
    assert float(w @ torch.tensor([1.0, -2.0], dtype=torch.float64)) == 0.0


def test_duplicated_rows_do_not_conflict():
    G = torch.ones(3, 3, dtype=torch.float64)
    assert torch.equal(gw.pcgrad(G, key=1), torch.ones(3, dtype=torch.float64))


@pytest.mark.parametrize("scale", [1e-15, 1e15])
def test_scale_invariant(scale):
    J = torch.randn(5, 7, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    G = J @ J.T
    assert torch.allclose(gw.pcgrad(G * scale, key=3), gw.pcgrad(G, key=3), rtol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_dtype_is_kept(dtype):
    w = gw.pcgrad(G2.to(dtype), key=0)
    assert w.dtype == dtype
    expected = torch.tensor([2.2222, 1.5789], dtype=torch.float64)
    assert torch.allclose(w.double(), expected, atol=2e-2)


def test_blocks_share_the_visiting_orders():
    gen = torch.Generator().manual_seed(2)
    Gs = torch.stack([(J @ J.T) for J in torch.randn(3, 5, 4, generator=gen, dtype=torch.float64)])
    W = gw.pcgrad(Gs, key=9)
    assert W.shape == (3, 5)
    for k in range(3):
        assert torch.allclose(W[k], gw.pcgrad(Gs[k], key=9), rtol=1e-14, atol=0)


def test_pure():
    G = torch.randn(4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert_pure(gw.pcgrad, G @ G.T, key=2)


def test_errors():
    with pytest.raises(TypeError, match="key"):
        gw.pcgrad(G2)
    no_key = r"`key` must be an int \(the random key; pass key=step\), got None\."
    with pytest.raises(TypeError, match=no_key):
        gw.pcgrad(G2, key=None)
    with pytest.raises(TypeError, match="`key` must be an int, got float."):
        gw.pcgrad(G2, key=1.5)
    with pytest.raises(TypeError, match="`key` must be an int, got bool."):
        gw.pcgrad(G2, key=True)
    with pytest.raises(ValueError, match=r"`G` must be a square matrix, got shape \(2, 3\)\."):
        gw.pcgrad(torch.zeros(2, 3), key=0)
    four_d = (
        r"`G` must be a Gramian \(m, m\) or a stack of block Gramians \(K, m, m\), "
        r"got shape \(1, 1, 2, 2\)\."
    )
    with pytest.raises(ValueError, match=four_d):
        gw.pcgrad(torch.zeros(1, 1, 2, 2), key=0)
    with pytest.raises(ValueError, match="finite"):
        gw.pcgrad(torch.tensor([[1.0, float("nan")], [float("nan"), 1.0]]), key=0)


def test_a_gramian_with_a_graph_is_detached():
    J = torch.randn(3, 5, generator=torch.Generator().manual_seed(7), requires_grad=True)
    assert not gw.pcgrad(J @ J.T, key=0).requires_grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_two_task_closed_form_matches_the_vectorised_loop(dtype):
    # gw.pcgrad answers m = 2 on Python floats; the general coefficient-space loop must agree.
    from gramweight.weightings._surgery import pcgrad_weights

    gen = torch.Generator().manual_seed(3)
    orders = gw.visiting_orders(2, key=0)
    for rows in range(1, 4):
        for _ in range(20):
            J = torch.randn(2, rows, generator=gen, dtype=torch.float64)
            J[0] *= float(torch.rand((), generator=gen)) * 10.0 ** int(torch.randint(-3, 4, (), generator=gen))
            G = (J @ J.T).to(dtype)
            loop = pcgrad_weights(G.double(), orders).to(dtype)
            assert torch.allclose(gw.pcgrad(G, key=5), loop, rtol=1e-5 if dtype == torch.float32 else 1e-12)
