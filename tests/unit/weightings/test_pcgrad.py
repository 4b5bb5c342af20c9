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


J3 = torch.tensor([[4.0, 3.0], [-2.0, -4.0], [-2.0, 0.0]], dtype=torch.float64)


def test_include_self_by_hand():
    # Issue 11, defect 6: the original code and LibMTL shuffle all m tasks, i included. Key 1
    # draws the shuffles [1, 2, 0], [0, 1, 2], [1, 2, 0]. By hand, g = (4, 3), (-2, -4), (-2, 0):
    # row 0: g_0 . g_1 = -20 -> + 20/20 g_1 = (2, -1); . g_2 = -4 -> + 4/4 g_2 = (0, -1);
    #        . g_0 = -3 < 0: it now conflicts with g_0 itself -> + 3/25 g_0 = (0.48, -0.64);
    #        coefficients (1.12, 1, 1) (the paper's order stops at (1, 1, 1), (0, -1)).
    # row 1: . g_0 = -20 -> + 20/25 g_0 = (1.2, -1.6); . g_1 = 4 > 0; . g_2 = -2.4 -> + 0.6 g_2;
    #        coefficients (0.8, 1, 0.6).
    # row 2: . g_1 = 4 > 0; . g_2 > 0; . g_0 = -8 -> + 8/25 g_0; coefficients (0.32, 0, 1).
    assert gw.visiting_orders(3, key=1, include_self=True).tolist() == [[1, 2, 0], [0, 1, 2], [1, 2, 0]]
    w = gw.pcgrad(J3 @ J3.T, key=1, include_self=True)
    expected = torch.tensor([1.12 + 0.8 + 0.32, 1.0 + 1.0 + 0.0, 1.0 + 0.6 + 1.0], dtype=torch.float64)
    assert torch.allclose(w, expected, rtol=1e-14, atol=0)
    assert torch.allclose(w @ J3, torch.tensor([-0.24, -1.28], dtype=torch.float64), rtol=1e-14, atol=1e-15)


def test_include_self_against_the_original_codes_loop():
    from gramweight.testing.references._pcgrad import pcgrad_shuffling_all_tasks
    from gramweight.weightings._surgery import pcgrad_weights

    gen = torch.Generator().manual_seed(4)
    differ = 0
    for trial in range(60):
        m = 3 + trial % 5
        J = torch.randn(m, 1 + trial % 4, generator=gen, dtype=torch.float64)
        G = J @ J.T
        w = gw.pcgrad(G, key=trial, include_self=True)
        ref = pcgrad_shuffling_all_tasks(J, key=trial)
        assert torch.allclose(w @ J, ref, rtol=0, atol=1e-12 * float(J.norm(dim=1).max()))
        # the same visits without the self-visits: the paper's algorithm in those orders
        orders = gw.visiting_orders(m, key=trial, include_self=True)
        others = torch.stack([row[row != i] for i, row in enumerate(orders)])
        differ += not torch.allclose(pcgrad_weights(G, others), w, rtol=1e-12, atol=1e-12)
    assert differ > 0  # the self-visits did project, on some draws


def test_include_self_changes_nothing_with_one_or_two_tasks():
    # After its one projection g_0^PC is orthogonal to g_1: g_0^PC . g_0 = ||g_0^PC||^2 >= 0.
    for key in range(4):
        for G in (torch.tensor([[4.0]]), G2, G2.float()):
            assert torch.equal(gw.pcgrad(G, key=key, include_self=True), gw.pcgrad(G, key=key))
    from gramweight.weightings._surgery import pcgrad_weights

    orders = gw.visiting_orders(2, key=0, include_self=True)
    assert torch.allclose(pcgrad_weights(G2, orders), gw.pcgrad(G2, key=0), rtol=1e-14)


def test_include_self_on_blocks():
    gen = torch.Generator().manual_seed(6)
    Gs = torch.stack([(J @ J.T) for J in torch.randn(3, 5, 2, generator=gen, dtype=torch.float64)])
    W = gw.pcgrad(Gs, key=2, include_self=True)
    for k in range(3):
        assert torch.allclose(W[k], gw.pcgrad(Gs[k], key=2, include_self=True), rtol=1e-14, atol=0)


@pytest.mark.parametrize("include_self", [False, True])
def test_non_contiguous_gramians(include_self):
    # Issue 11, defect 5: `view size is not compatible` on a transposed G, m >= 3.
    gen = torch.Generator().manual_seed(9)
    J = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    G = J @ J.T
    assert not G.mT.is_contiguous()
    expected = gw.pcgrad(G, key=0, include_self=include_self)
    assert torch.equal(gw.pcgrad(G.mT, key=0, include_self=include_self), expected)
    assert torch.equal(gw.pcgrad(G.float().mT, key=0), gw.pcgrad(G.float(), key=0))
    Gs = torch.stack([G, G.flip(0, 1)])
    assert torch.equal(gw.pcgrad(Gs.mT, key=1), gw.pcgrad(Gs, key=1))


def test_include_self_errors():
    with pytest.raises(TypeError, match=r"^`include_self` must be a bool, got int\.$"):
        gw.pcgrad(G2, key=0, include_self=1)
    with pytest.raises(ValueError, match=r"^`key` must be in \[0, 2\*\*63 - 1\], got -1\.$"):
        gw.pcgrad(G2, key=-1, include_self=True)
