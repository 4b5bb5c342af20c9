"""Engine behaviour: errors, hooks, exceptions, blocks, custom rules, forms of the Linear rule."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gramweight as gw
from gramweight.autogram import Engine, Outer, PerLoss
from gramweight.testing import reference_gramian

DT = torch.float64


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).to(DT)


def x_batch(B=5):
    return torch.randn(B, 3, dtype=DT)


def _hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


# ------------------------------------------------------------------ lifecycle
def test_close_removes_every_hook_and_context_manager_closes():
    model = mlp()
    assert _hooks(model) == 0
    with Engine(model, batch_dim=0) as engine:
        assert _hooks(model) == 2 * len(list(model.modules()))
    assert _hooks(model) == 0
    with pytest.raises(RuntimeError, match=r"^`engine` must be open"):
        engine.gramian(model(x_batch()).sum(1))
    with pytest.raises(RuntimeError, match=r"^`engine` must be open"):
        engine.backward(torch.ones(5, dtype=DT))
    engine.close()  # closing twice is harmless


def test_exception_inside_a_step_leaves_the_engine_usable():
    model, x = mlp(), x_batch()
    engine = Engine(model, batch_dim=0)
    with pytest.raises(RuntimeError):
        model(torch.randn(5, 7, dtype=DT))  # wrong input size: fails inside the forward
    with pytest.raises(ValueError, match="losses"):
        engine.gramian(model(x).sum())  # wrong shape of losses
    losses_fn = lambda: (model(x) ** 2).sum(1)  # noqa: E731
    G = engine.gramian(losses_fn())
    torch.testing.assert_close(G, reference_gramian(model, losses_fn), rtol=1e-9, atol=1e-12)
    # nothing stays recorded from the failed steps: a normal step afterwards is exact
    engine.backward(torch.ones(5, dtype=DT))
    engine.close()


def test_plain_backward_still_works_with_the_engine_installed():
    model, x = mlp(), x_batch()
    w = torch.rand(5, dtype=DT)
    (model(x).sum(1) * w).sum().backward()
    expected = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    with Engine(model, batch_dim=0) as engine:
        model(x).sum(1).backward(w)  # never asks for a Gramian
        assert all(torch.equal(p.grad, e) for p, e in zip(model.parameters(), expected))
        model.zero_grad(set_to_none=True)
        losses = model(x).sum(1)
        engine.gramian(losses, retain_graph=True)
        losses.backward(w)
        assert all(torch.allclose(p.grad, e) for p, e in zip(model.parameters(), expected))


def test_backward_accumulates_like_autograd():
    model, x = mlp(), x_batch()
    w = torch.rand(5, dtype=DT)
    model(x).sum(1).backward(w)
    model(x).sum(1).backward(w)
    expected = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    with Engine(model, batch_dim=0) as engine:
        for _ in range(2):
            engine.gramian(model(x).sum(1))
            engine.backward(w)
    for p, e in zip(model.parameters(), expected):
        torch.testing.assert_close(p.grad, e, rtol=1e-12, atol=1e-12)


def test_block_weights_give_each_block_its_own_combination():
    model, x = mlp(), x_batch()
    W = torch.rand(2, 5, dtype=DT)
    with Engine(model, batch_dim=0) as engine:
        assert engine.blocks == ("0", "2")
        engine.gramian(model(x).sum(1))
        engine.backward(W)
        got = [p.grad.clone() for p in model.parameters()]
    for k, layer in enumerate((model[0], model[2])):
        g = torch.autograd.grad(model(x).sum(1) @ W[k], list(layer.parameters()))
        for a, b in zip(g, got[2 * k: 2 * k + 2]):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_several_modules_and_several_forwards_per_step():
    torch.manual_seed(0)
    enc, head = nn.Linear(3, 4).to(DT), nn.Linear(4, 2).to(DT)
    x1, x2 = x_batch(), x_batch()

    def losses_fn():  # a siamese pair: two forwards of the same modules per loss
        return (head(torch.tanh(enc(x1))) * head(torch.tanh(enc(x2)))).sum(1)
    params = list(enc.parameters()) + list(head.parameters())
    holder = nn.ModuleList([enc, head])
    with Engine([enc, head], batch_dim=0) as engine:
        G = engine.gramian(losses_fn())
        assert engine.blocks == ("0", "1")
    torch.testing.assert_close(G, reference_gramian(holder, losses_fn), rtol=1e-9, atol=1e-12)
    assert len(params) == 4


def test_float32_within_1e_4():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 2))
    x = torch.randn(4, 2, 4, 4)
    losses_fn = lambda: (model(x) ** 2).sum(1)  # noqa: E731
    with Engine(model, batch_dim=0) as engine:
        G = engine.gramian(losses_fn())
    assert G.dtype == torch.float32
    torch.testing.assert_close(G, reference_gramian(model, losses_fn), rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ errors
def test_invalid_construction():
    with pytest.raises(TypeError, match=r"^`modules` must be an nn.Module"):
        Engine([1, 2], batch_dim=0)
    with pytest.raises(ValueError, match=r"^`batch_dim` must be 0 or None, got 1\.$"):
        Engine(mlp(), batch_dim=1)
    with pytest.raises(ValueError, match=r"^`modules` must be modules with parameters"):
        Engine(nn.ReLU(), batch_dim=0)


def test_batchnorm_in_training_mode_is_refused_with_batch_dim():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    with pytest.raises(ValueError, match=r"BatchNorm.*batch_dim=None.*got BatchNorm1d '1'"):
        Engine(model, batch_dim=0)
    model.eval()
    engine = Engine(model, batch_dim=0)  # running statistics: samples stay independent
    model.train()
    with pytest.raises(RuntimeError, match="BatchNorm"):
        model(torch.randn(4, 3))
    engine.close()
    Engine(model.train(), batch_dim=None).close()  # exact when the losses share the batch


def test_losses_not_computed_by_the_hooked_modules():
    model = mlp()
    engine = Engine(model, batch_dim=0)
    x = torch.randn(5, 3, dtype=DT, requires_grad=True)
    with pytest.raises(ValueError, match=r"^`losses` must be computed by the hooked modules"):
        engine.gramian((x ** 2).sum(1))
    model(x_batch())  # recorded, but the losses do not use it
    with pytest.raises(ValueError, match=r"^`losses` must be dependent on the hooked"):
        engine.gramian((x ** 2).sum(1))
    with pytest.raises(ValueError, match=r"^`losses` must be a tensor that requires grad"):
        engine.gramian(torch.ones(5, dtype=DT))
    with pytest.raises(TypeError, match=r"^`losses` must be a floating-point tensor"):
        engine.gramian([1.0])


def test_parameter_used_outside_the_forward_is_refused():
    model, x = mlp(), x_batch()
    with Engine(model, batch_dim=0) as engine:
        losses = model(x).sum(1) + (model[0].weight ** 2).sum()
        with pytest.raises(ValueError, match=r"only through the forward of the hooked modules"):
            engine.gramian(losses)


@pytest.mark.parametrize(("batch_dim", "shape"), [(0, ()), (0, (5, 2, 1)), (None, ())])
def test_losses_of_the_wrong_shape(batch_dim, shape):
    model, x = mlp(), x_batch()
    with Engine(model, batch_dim=batch_dim) as engine:
        losses = model(x).sum() * torch.ones(shape, dtype=DT)
        with pytest.raises(ValueError, match=r"^`losses` must be of shape"):
            engine.gramian(losses)


def test_losses_whose_rows_are_not_the_samples():
    model, x = mlp(), x_batch()
    with Engine(model, batch_dim=0) as engine:
        with pytest.raises(ValueError, match=r"must be the sample dimension|batch_dim"):
            engine.gramian(model(x).sum(1)[:3])


def test_backward_before_gramian_and_weights_of_the_wrong_shape():
    model, x = mlp(), x_batch()
    with Engine(model, batch_dim=0) as engine:
        with pytest.raises(RuntimeError, match=r"^`engine.gramian\(losses\)` must be called"):
            engine.backward(torch.ones(5, dtype=DT))
        engine.gramian(model(x).sum(1))
        with pytest.raises(ValueError, match=r"^`weights` must be of shape \(5,\) or \(2, 5\), "
                                             r"got shape \(4,\)\.$"):
            engine.backward(torch.ones(4, dtype=DT))
        with pytest.raises(TypeError, match=r"^`weights` must be a tensor"):
            engine.backward([1.0] * 5)
        with pytest.raises(ValueError, match=r"^`weights` must be finite"):
            engine.backward(torch.full((5,), float("nan"), dtype=DT))
        engine.backward(torch.ones(5, dtype=DT))
        with pytest.raises(RuntimeError, match=r"must be called before engine.backward"):
            engine.backward(torch.ones(5, dtype=DT))  # once per Gramian


def test_in_place_change_of_an_output_after_the_call_is_exact():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(inplace=True), nn.Linear(4, 2)).to(DT)
    x = x_batch()
    losses_fn = lambda: (model(x) ** 2).sum(1)  # noqa: E731
    with Engine(model, batch_dim=0) as engine:
        G = engine.gramian(losses_fn())
    torch.testing.assert_close(G, reference_gramian(model, losses_fn), rtol=1e-9, atol=1e-12)


class ChangesItsInput(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x):
        h = x * 1.0
        out = self.lin(h)
        h.add_(1.0)  # the Linear's recorded input changes after the call
        return out


def test_in_place_change_of_a_recorded_input_is_refused():
    model = ChangesItsInput().to(DT)
    with Engine(model, batch_dim=0) as engine:
        with pytest.raises(RuntimeError, match=r"^`the inputs of hooked modules` must be left "
                                               r"unmodified"):
            engine.gramian(model(x_batch()).sum(1))


def test_invalid_per():
    model, x = mlp(), x_batch()
    with Engine(model, batch_dim=0) as engine:
        with pytest.raises(ValueError, match=r"^`per` must be None, \"module\", \"parameter\" "
                                             r"or a mapping \{path: group name\}, got 'layer'\.$"):
            engine.gramian(model(x).sum(1), per="layer")


# ------------------------------------------------------------------ rules
class Scale(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.s = nn.Parameter(torch.randn(d, dtype=DT))

    def forward(self, x):
        return x * self.s


def scale_rule(module, inputs, grad_output, *, batched):
    (x,) = inputs
    n = x.shape[0] if batched else 1
    t = grad_output.shape[0]
    g = (grad_output * x).reshape(t, n, -1, x.shape[-1]).sum(2)  # (t, n, d)
    return {"s": PerLoss(g.transpose(0, 1).reshape(n * t, -1))}


@pytest.mark.parametrize("batch_dim", [0, None])
def test_user_rule_is_used_and_exact(batch_dim):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4).to(DT), Scale(4), nn.Tanh(), nn.Linear(4, 2).to(DT))
    x = x_batch()
    losses_fn = lambda: ((model(x) ** 2).sum(1) if batch_dim == 0  # noqa: E731
                         else (model(x) ** 2).mean(0))
    calls = []

    def spy(*a, **k):
        calls.append(1)
        return scale_rule(*a, **k)
    with Engine(model, batch_dim=batch_dim, rules={Scale: spy}) as engine:
        G = engine.gramian(losses_fn())
    assert calls
    torch.testing.assert_close(G, reference_gramian(model, losses_fn), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("n", "P", "g", "I", "t", "O"),
                         [(4, 1, 1, 3, 1, 2), (3, 5, 1, 2, 2, 4), (2, 3, 2, 3, 3, 2),
                          (1, 6, 1, 3, 4, 5), (1, 4, 2, 3, 3, 2)])  # n = 1: the kernel form
def test_outer_ghost_and_materialised_forms_agree(n, P, g, I, t, O, monkeypatch):
    torch.manual_seed(0)
    X, dY = torch.randn(n, P, g, I, dtype=DT), torch.randn(t, n, P, g, O, dtype=DT)
    f = Outer(X, dY, torch.Size((g * O, I)))
    J = f.grads().flatten(1)
    monkeypatch.setattr(Outer, "ghost_cheaper", lambda self: True)
    ghost = f.gramian()
    monkeypatch.setattr(Outer, "ghost_cheaper", lambda self: False)
    torch.testing.assert_close(ghost, J @ J.T, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(f.gramian(), J @ J.T, rtol=1e-12, atol=1e-12)
    w = torch.randn(n * t, dtype=DT)
    torch.testing.assert_close(f.weighted(w), (w @ J).reshape(g * O, I))


def test_registry_matches_exact_types_only():
    class MyLinear(nn.Linear):
        def forward(self, x):
            return super().forward(x) * 2

    assert nn.Linear in gw.autogram.RULES and MyLinear not in gw.autogram.RULES
    torch.manual_seed(0)
    model = nn.Sequential(MyLinear(3, 2)).to(DT)
    x = x_batch()
    losses_fn = lambda: model(x).pow(2).sum(1)  # noqa: E731
    with Engine(model, batch_dim=0) as engine:
        G = engine.gramian(losses_fn())  # generic fallback
    torch.testing.assert_close(G, reference_gramian(model, losses_fn), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["linear_long_sequence", "cnn", "transformer_encoder",
                                  "tied_embedding"])
def test_keep_gradients_gives_the_same_gramian_and_gradients(name):
    from ._zoo import ZOO, losses_of

    torch.manual_seed(0)
    model, x, forward = ZOO[name].build()
    model = model.to(DT)
    x = x.to(DT) if x.is_floating_point() else x
    results = []
    for keep in (False, True):
        model.zero_grad(set_to_none=True)
        with Engine(model, batch_dim=0, keep_gradients=keep) as engine:
            G = engine.gramian(losses_of(forward(model, x), "instance"))
            engine.backward(torch.linspace(0.5, 1.5, G.shape[0], dtype=DT))
        results.append((G, [p.grad.clone() for p in model.parameters()]))
    (G0, g0), (G1, g1) = results
    torch.testing.assert_close(G0, G1, rtol=1e-12, atol=1e-12)
    for a, b in zip(g0, g1):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_dropout_in_a_transformer_draws_the_masks_of_the_unhooked_model():
    # jacrev's forward lays tensors out differently, so dropout masks differ there: the
    # reference here is a loop of autograd.grad on the model without the engine.
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=12, dropout=0.2, batch_first=True)
    model = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).to(DT)
    x = torch.randn(4, 3, 8, dtype=DT)

    def losses_fn():
        torch.manual_seed(1)
        return model(x).pow(2).sum((1, 2))
    params = list(model.parameters())
    losses = losses_fn()
    J = torch.stack([torch.cat([g.flatten() for g in torch.autograd.grad(l, params,
                                                                         retain_graph=True)])
                     for l in losses])
    w = torch.linspace(0.5, 1.5, 4, dtype=DT)
    expected_grads = torch.autograd.grad(losses @ w, params)
    with Engine(model, batch_dim=0) as engine:
        hooked = losses_fn()
        torch.testing.assert_close(hooked, losses.detach(), rtol=1e-12, atol=1e-12)
        G = engine.gramian(hooked)
        engine.backward(w)
    torch.testing.assert_close(G, J @ J.T, rtol=1e-9, atol=1e-12)
    for p, e in zip(params, expected_grads):
        torch.testing.assert_close(p.grad, e, rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------ torch.compile, parametrizations
class _FreeScale(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([0.5, -1.0, 2.0], dtype=DT))

    def forward(self, x):
        return x * self.scale


class _Encoder(nn.Module):
    # a parameter of a module without a rule, inside a parameter-less parent: the case that
    # torch.compile(backend="eager") counted twice (issue 12)
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3).to(DT)
        self.block = nn.Sequential(_FreeScale())

    def forward(self, x):
        return self.block(torch.tanh(self.lin(x)))


def test_a_torch_compiled_module_is_refused_at_construction_with_its_path():
    torch.manual_seed(0)
    model = _Encoder()
    parent = nn.Sequential(nn.Linear(3, 3).to(DT), torch.compile(model, backend="eager"))
    with pytest.raises(TypeError, match=r"^`modules` must be uncompiled .* got the "
                       r"torch.compile'd module '1'\.$"):
        Engine(parent, batch_dim=0)
    with pytest.raises(TypeError, match=r"_orig_mod"):
        Engine(torch.compile(model, backend="eager"), batch_dim=0)
    assert _hooks(model) == 0  # a refused engine leaves no hook behind


def test_a_compiled_forward_of_hooked_modules_is_refused_and_the_engine_stays_usable():
    torch.manual_seed(0)
    model, x = _Encoder(), x_batch(4)
    expected = reference_gramian(model, lambda: (model(x) ** 2).sum(1))  # per-sample jacrev
    with Engine(model, batch_dim=0) as engine:
        compiled = torch.compile(model, backend="eager")
        with pytest.raises(RuntimeError, match=r"^`the hooked modules` must be run uncompiled"
                           r".* got a forward of module '_Encoder' under torch.compile\.$"):
            engine.gramian((compiled(x) ** 2).sum(1))
        # the uncompiled module, in the same engine, is exact
        G = engine.gramian((model(x) ** 2).sum(1))
    torch.testing.assert_close(G, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("B", [3, 4])
def test_parametrized_weight_with_out_features_equal_to_the_batch_size_is_exact(B):
    # issue 12: out_features == B gave a 0.5 relative error (the parametrization's output was
    # taken for a batch), another B a refusal naming _WeightNorm
    P = nn.utils.parametrizations
    torch.manual_seed(0)
    model = nn.Sequential(P.weight_norm(nn.Linear(2, 3)), nn.Tanh(),
                          P.orthogonal(nn.Linear(3, 3))).to(DT)
    x = torch.randn(B, 2, dtype=DT)

    def losses():
        return (model(x) ** 2).sum(1)

    expected = reference_gramian(model, losses)  # jacrev
    expected_0 = reference_gramian(model[0], losses)  # jacrev w.r.t. model[0]'s parameters
    with Engine(model, batch_dim=0) as engine:
        G = engine.gramian(losses())
        Gs = engine.gramian(losses(), per="module")
    torch.testing.assert_close(G, expected, rtol=1e-10, atol=1e-12)
    # the originals belong to the block of the parametrized module
    assert engine.blocks == ("0", "2")
    torch.testing.assert_close(Gs[0], expected_0, rtol=1e-10, atol=1e-12)


def test_parametrization_cache_is_refused_with_the_module_path():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Tanh(), nn.utils.parametrizations.weight_norm(nn.Linear(3, 2)))
    model = model.to(DT)
    x = x_batch()
    with Engine(model, batch_dim=0) as engine:
        with nn.utils.parametrize.cached(), pytest.raises(
                RuntimeError, match=r"parametrize.cached\(\).* got ParametrizedLinear '1' "
                r"called inside it\.$"):
            model(x)
        G = engine.gramian((model(x) ** 2).sum(1))  # usable afterwards, and exact
    torch.testing.assert_close(G, reference_gramian(model, lambda: (model(x) ** 2).sum(1)),
                               rtol=1e-10, atol=1e-12)


def test_compiled_functions_inside_a_hooked_forward_are_exact():
    # a torch.compile'd function, given a parameter or not, inside an uncompiled forward:
    # torch.compile breaks its graph at each op the engine records, which then runs eagerly
    def gate(x, w):
        return torch.tanh(x * w)

    def act(x):
        return torch.tanh(x) * 2

    class Net(nn.Module):
        def __init__(self, gate, act):
            super().__init__()
            self.lin, self.scale = nn.Linear(3, 3).to(DT), _FreeScale()
            self.gate, self.act = gate, act

        def forward(self, x):
            return self.gate(self.act(self.lin(x)), self.scale.scale)

    torch.manual_seed(0)
    plain, x = Net(gate, act), x_batch(4)
    expected = reference_gramian(plain, lambda: (plain(x) ** 2).sum(1))  # jacrev, uncompiled
    model = Net(torch.compile(gate, backend="eager"), torch.compile(act, backend="eager"))
    model.load_state_dict(plain.state_dict())
    with Engine(model, batch_dim=0) as engine:
        G = engine.gramian((model(x) ** 2).sum(1))
    torch.testing.assert_close(G, expected, rtol=1e-10, atol=1e-12)


def test_legacy_weight_norm_on_the_root_module_is_exact():
    # torch.nn.utils.weight_norm sets the weight in a forward pre-hook, which ran before the
    # engine's and outside the recorded call (refused as a use outside the forward)
    torch.manual_seed(0)
    with pytest.warns(FutureWarning):
        model = nn.utils.weight_norm(nn.Linear(3, 5).to(DT))
    x = x_batch(5)  # out_features == B
    expected = reference_gramian(model, lambda: (model(x) ** 2).sum(1))  # jacrev
    with Engine(model, batch_dim=0) as engine:
        G = engine.gramian((model(x) ** 2).sum(1))
        model.zero_grad()
        engine.gramian((model(x) ** 2).sum(1))
        engine.backward(torch.ones(5, dtype=DT))
    torch.testing.assert_close(G, expected, rtol=1e-10, atol=1e-12)
    got = [model.weight_g.grad, model.weight_v.grad]
    model.zero_grad()
    (model(x) ** 2).sum().backward()
    torch.testing.assert_close(got, [model.weight_g.grad, model.weight_v.grad])


def test_an_output_without_the_batch_on_dim_0_is_refused_with_the_module_path():
    class Transposed(nn.Module):  # no rule: the generic fallback
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(3, dtype=DT))

        def forward(self, x):
            return (x * self.w).T  # (3, B)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = Transposed()

        def forward(self, x):
            return self.inner(x).T

    model = nn.Sequential(Net())
    with Engine(model, batch_dim=0) as engine, pytest.raises(
            ValueError, match=r"^`batch_dim=0` must be the sample dimension .* got an output "
            r"of Transposed '0.inner' with 3 rows"):
        engine.gramian((model(x_batch()) ** 2).sum(1))


@pytest.mark.parametrize("name", ["tied_embedding", "tied_output_projection_f_linear",
                                  "linear_long_sequence", "shared_parameter", "cnn"])
@pytest.mark.parametrize("shape", ["instance", "mixed", "multitask"])
def test_gramian_by_blocks_of_rows_is_exact(name, shape, monkeypatch):
    # a tiny budget: every parameter's Gramian is taken by blocks of (one or two) rows
    from gramweight.autogram.rules import _factors

    from ._zoo import ZOO, batch_dim_of, losses_of

    monkeypatch.setattr(_factors, "CHUNK", 40)
    torch.manual_seed(0)
    model, x, forward = ZOO[name].build()
    model = model.to(DT)
    x = x.to(DT) if x.is_floating_point() else x
    losses_fn = lambda: losses_of(forward(model, x), shape)  # noqa: E731
    expected = reference_gramian(model, losses_fn)
    with Engine(model, batch_dim=batch_dim_of(shape)) as engine:
        G = engine.gramian(losses_fn())
        torch.testing.assert_close(G, expected, rtol=1e-9, atol=1e-12 * expected.abs().max())
        w = torch.rand(G.shape[0], dtype=DT)
        engine.backward(w)
    got = {n: p.grad for n, p in model.named_parameters()}
    model.zero_grad()
    losses_fn().flatten().backward(w)
    for n, p in model.named_parameters():
        torch.testing.assert_close(got[n], p.grad, rtol=1e-9, atol=1e-12, msg=n)
