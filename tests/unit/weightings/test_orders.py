"""visiting_orders: the documented draw, its shape and its errors."""

import pytest
import torch

import gramweight as gw


@pytest.mark.parametrize("m", [1, 2, 3, 9])
def test_each_row_is_a_permutation_of_the_other_tasks(m):
    orders = gw.visiting_orders(m, key=4)
    assert orders.shape == (m, m - 1)
    assert orders.dtype == torch.int64
    for i in range(m):
        assert sorted(orders[i].tolist()) == [j for j in range(m) if j != i]


def test_the_documented_recipe():
    m, key = 6, 123
    generator = torch.Generator().manual_seed(key)
    expected = []
    for i in range(m):
        p = torch.randperm(m - 1, generator=generator).tolist()
        expected.append([x + (x >= i) for x in p])
    assert gw.visiting_orders(m, key=key).tolist() == expected


@pytest.mark.parametrize("m", [1, 2, 3, 9])
def test_include_self_rows_are_permutations_of_all_tasks(m):
    orders = gw.visiting_orders(m, key=4, include_self=True)
    assert orders.shape == (m, m) and orders.dtype == torch.int64
    for i in range(m):
        assert sorted(orders[i].tolist()) == list(range(m))


def test_the_documented_recipe_with_include_self():
    m, key = 6, 321
    generator = torch.Generator().manual_seed(key)
    expected = [torch.randperm(m, generator=generator).tolist() for _ in range(m)]
    assert gw.visiting_orders(m, key=key, include_self=True).tolist() == expected


def test_keys_and_global_state():
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    a = gw.visiting_orders(8, key=1)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.equal(a, gw.visiting_orders(8, key=1))
    assert not torch.equal(a, gw.visiting_orders(8, key=2))


def test_device_argument():
    assert gw.visiting_orders(3, key=0, device="cpu").device == torch.device("cpu")


def test_errors():
    with pytest.raises(ValueError, match="`m` must be >= 1, got 0."):
        gw.visiting_orders(0, key=0)
    with pytest.raises(TypeError, match="`key` must be an int"):
        gw.visiting_orders(3, key=None)
    with pytest.raises(ValueError, match=r"^`key` must be in \[0, 2\*\*63 - 1\], got -1\.$"):
        gw.visiting_orders(3, key=-1)
    with pytest.raises(TypeError, match=r"^`include_self` must be a bool, got NoneType\.$"):
        gw.visiting_orders(3, key=0, include_self=None)
