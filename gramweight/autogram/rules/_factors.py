"""The two forms in which a rule hands back the per-loss gradients of one parameter.

A rule never returns the gradients themselves when it can avoid it: it returns a *factor*
that knows how to produce, for the ``m`` losses,

- ``gramian()``: the (m, m) Gramian of the parameter's per-loss gradients,
- ``grads()``: the per-loss gradients, materialised, shape (m, *param.shape),
- ``weighted(w)``: ``sum_i w[i] * grads()[i]``, shape param.shape, without materialising.

The engine asks for ``gramian()`` when a parameter has one use, for ``grads()`` when it has
several (so that the cross terms between uses are exact), and for ``weighted(w)`` in
``Engine.backward``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["Factor", "Outer", "PerLoss", "gramian_of_uses", "rows_of"]

CHUNK = 1 << 24
"""At most this many elements of per-loss gradients are materialised at once to compute a
Gramian that does not keep them (by blocks of rows of the parameter)."""


def rows_of(grads: Tensor) -> Tensor:
    """Per-loss gradients (m, *shape) as an (m, numel) matrix, also for a 0-dim parameter."""
    return grads.reshape(grads.shape[0], -1)


_rows = rows_of


class Factor:
    """Interface of a factor (see the module docstring)."""

    keep_grads = False  # set by the engine: may ``gramian`` keep what it materialises?

    def gramian(self) -> Tensor:
        g = _rows(self.grads())
        return g @ g.T

    def grads(self) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def weighted(self, w: Tensor) -> Tensor:
        return torch.tensordot(w.to(self.dtype), self.grads(), dims=1)

    def grads_rows(self, a: int, b: int) -> Tensor:
        """The per-loss gradients of rows ``a:b`` (dimension 0) of the parameter."""
        return self.grads()[:, a:b]


def _row_blocks(m: int, shape: torch.Size) -> range | None:
    """Starts of the blocks of rows of a parameter whose (m, rows, ...) per-loss gradients
    hold at most ``CHUNK`` elements; None when the whole parameter fits."""
    if len(shape) == 0 or m * shape.numel() <= CHUNK:
        return None
    step = max(1, CHUNK // (m * (shape.numel() // shape[0])))
    return range(0, shape[0], step)


def _gramian_by_rows(fs: list[Factor], blocks: range, rows: int) -> Tensor:
    G = None
    for a in blocks:
        g = rows_of(_total(f.grads_rows(a, min(a + blocks.step, rows)) for f in fs))
        G = g @ g.T if G is None else G.addmm_(g, g.T)
    return G


def _total(tensors):
    it = iter(tensors)
    total = next(it)
    for x in it:
        total = total + x
    return total


def gramian_of_uses(fs: list[Factor], m: int, shape: torch.Size) -> tuple[Tensor, Tensor | None]:
    """The Gramian of the summed per-loss gradients of several uses of one parameter (cross
    terms included), and that sum when it was materialised whole.

    A large parameter (a tied embedding of a large vocabulary) is taken by blocks of rows:
    each use gives the gradients of a block only (an embedding's are non-zero on a few rows,
    a linear map's are one product per block), and the sum is never materialised.
    """
    blocks = _row_blocks(m, shape)
    if blocks is None:
        total = _total(f.grads() for f in fs)
        g = rows_of(total)
        return g @ g.T, total
    return _gramian_by_rows(fs, blocks, shape[0]), None


class PerLoss(Factor):
    """Materialised per-loss gradients ``grads`` of shape (m, *param.shape)."""

    def __init__(self, grads: Tensor):
        self._grads = grads
        self.dtype = grads.dtype

    def grads(self) -> Tensor:
        return self._grads

    def gramian(self) -> Tensor:
        g = _rows(self._grads)
        return g @ g.T


class Outer(Factor):
    r"""Gradients of a linear map: $g_{(s,k)} = \sum_p dY_{k,s,p}^\top X_{s,p}$ per group.

    Args:
        X: inputs, shape (n, P, g, I): n independent samples (1 when the losses share the
            batch), P positions summed over, g groups, I input features.
        dY: output gradients, shape (t, n, P, g, O): one slice per task; loss ``(s, k)`` (row
            ``s * t + k`` of the Gramian) depends on sample ``s`` only.
        shape: the parameter's shape, of ``g * O * I`` elements laid out as (g, O, I).

    ``gramian()`` picks, from the shapes, the cheaper of the "ghost" form
    $\sum_{p,q} (X_{s,p} \cdot X_{s',q}) (dY_{k,s,p} \cdot dY_{k',s',q})$ and the
    Gramian of the materialised gradients. With one sample (``n = 1``: losses that share the
    batch, ``t`` tasks) the ghost form multiplies the (P, P) kernel $K = X X^\top$ with
    each task's output gradient once, $G_{kk'} = \langle dY_k, K dY_{k'} \rangle$, at
    ``P^2 (I + t O)`` multiply-adds instead of ``P^2 (I + t^2 O)``.
    """

    def __init__(self, X: Tensor, dY: Tensor, shape: torch.Size):
        self.X, self.dY, self.shape = X, dY, shape
        self.dtype = dY.dtype
        self._grads: Tensor | None = None  # kept when the Gramian materialised them
        self.output_gramian: Tensor | None = None  # dY dY^T, when the ghost form computed it
        # False (the engine's default): materialised gradients are kept only when they are no
        # larger than X and dY, else ``weighted`` recomputes from X and dY
        self.keep_grads = False

    def _sizes(self):
        n, P, g, I = self.X.shape
        return n, P, g, I, self.dY.shape[0], self.dY.shape[-1]

    @staticmethod
    def cost_says_ghost(n: int, P: int, g: int, I: int, t: int, O: int) -> bool:
        """Whether the ghost form costs fewer multiply-adds than materialising the gradients."""
        if n == 1:  # the kernel form (see the class docstring)
            ghost = g * (P * P * (I + t * O) + t * t * P * O)
        else:
            ghost = g * n * n * P * P * (I + t * t * O + t * t)
        materialised = g * n * t * P * O * I + g * (n * t) ** 2 * O * I
        return ghost < materialised

    def ghost_cheaper(self) -> bool:
        n, P, g, I, t, O = self._sizes()
        return self.cost_says_ghost(n, P, g, I, t, O)

    def gramian(self) -> Tensor:
        if not self.ghost_cheaper():
            n, P, g, I, t, O = self._sizes()
            blocks = _row_blocks(n * t, self.shape) if g == 1 else None
            if (blocks is not None and not self.keep_grads
                    and n * t * self.shape.numel() > self.X.numel() + self.dY.numel()):
                return _gramian_by_rows([self], blocks, self.shape[0])
            grads = self.grads()
            # any order of a gradient's entries gives the same Gramian: skip the copy
            g = grads.transpose(1, 2) if grads.dim() == 3 else grads
            g = g.reshape(g.shape[0], -1)
            if self.keep_grads or grads.numel() <= self.X.numel() + self.dY.numel():
                # keep the per-loss gradients: ``weighted`` is then a cheap (m,) contraction,
                # and they replace the activations
                self._grads, self.X, self.dY = grads, None, None
            return g @ g.T
        n, P, g, I, t, O = self._sizes()
        X, dY = self.X.to(self.dtype), self.dY
        if P == 1 and g == 1:
            XX = X[:, 0, 0] @ X[:, 0, 0].T  # (n, n)
            D = dY[:, :, 0, 0].transpose(0, 1).reshape(n * t, O)  # rows (s, k)
            self.output_gramian = D @ D.T  # also the Gramian of a bias of this layer
            return self.output_gramian * XX.repeat_interleave(t, 0).repeat_interleave(t, 1)
        if n == 1:
            return self._kernel_gramian(X[0], dY[:, 0])
        XX = torch.einsum("npgi,qrgi->gnpqr", X, X)
        DD = torch.einsum("tnpgo,uqrgo->gnpqrtu", dY, dY)
        G = torch.einsum("gnpqr,gnpqrtu->ntqu", XX, DD)
        return G.reshape(n * t, n * t)

    @staticmethod
    def _kernel_gramian(X: Tensor, dY: Tensor) -> Tensor:
        """The (t, t) Gramian of one sample: X (P, g, I), dY (t, P, g, O)."""
        t, P, g, O = dY.shape
        if g == 1:
            D = dY.reshape(t, P, O)
            KD = (X[:, 0] @ X[:, 0].T) @ D  # (t, P, O), the kernel broadcast over the tasks
        else:
            D = dY.permute(2, 0, 1, 3)  # (g, t, P, O)
            KD = torch.einsum("pgi,qgi->gpq", X, X).unsqueeze(1) @ D
        D, KD = D.reshape(-1, t, P * O), KD.reshape(-1, t, P * O)  # (g, t, P * O)
        G = (D @ KD.transpose(1, 2)).sum(0)
        return (G + G.T) / 2  # exactly symmetric, as K is

    def grads(self) -> Tensor:
        if self._grads is not None:
            return self._grads
        n, P, g, I, t, O = self._sizes()
        X = self.X.to(self.dtype)
        if g == 1 and t == 1:  # (I x P) @ (P x O) per sample is the fastest layout
            G = torch.bmm(X[:, :, 0].transpose(1, 2), self.dY[0, :, :, 0]).transpose(1, 2)
        else:
            G = torch.einsum("tnpgo,npgi->ntgoi", self.dY, X)
        return G.reshape(n * t, *self.shape)

    def grads_rows(self, a: int, b: int) -> Tensor:
        n, P, g, I, t, O = self._sizes()
        if self._grads is not None or g != 1:
            return self.grads()[:, a:b]
        # rows of the weight are output features (g = 1): the products of their columns of dY
        X, dY = self.X[:, :, 0].to(self.dtype), self.dY[:, :, :, 0, a:b]
        G = torch.einsum("tnpo,npi->ntoi", dY, X) if t > 1 else torch.bmm(
            dY[0].transpose(1, 2), X)
        return G.reshape(n * t, b - a, *self.shape[1:])

    def weighted(self, w: Tensor) -> Tensor:
        if self._grads is not None:
            G, w = self._grads, w.to(self.dtype)
            if G.dim() == 3 and not G.is_contiguous() and G.transpose(1, 2).is_contiguous():
                return torch.tensordot(w, G.transpose(1, 2), dims=1).T.contiguous()
            return torch.tensordot(w, G, dims=1)
        n, P, g, I, t, O = self._sizes()
        w = w.to(self.dtype).reshape(n, t)
        if t == 1:
            dYw = self.dY[0] * w.reshape(n, 1, 1, 1)
        elif n == 1:  # one matrix-vector product over the tasks
            dYw = (w[0] @ self.dY.reshape(t, -1)).reshape(self.dY.shape[1:])
        else:
            dYw = torch.einsum("nt,tnpgo->npgo", w, self.dY)
        X = self.X.to(self.dtype)
        if g == 1:  # one matrix product, as in autograd's own weight gradient
            return (dYw.reshape(-1, O).T @ X.reshape(-1, I)).reshape(self.shape)
        return torch.einsum("npgo,npgi->goi", dYw, X).reshape(self.shape)


class BiasOf(PerLoss):
    """Bias gradients (the output gradients summed over positions) of the layer of ``outer``.

    With one position per sample, their Gramian is the ``dY dYᵀ`` that the weight's ghost
    form has just computed: it is reused instead of being computed again.
    """

    def __init__(self, grads: Tensor, outer: Outer):
        super().__init__(grads)
        self.outer = outer

    def gramian(self) -> Tensor:
        if self.outer.output_gramian is not None:
            return self.outer.output_gramian
        return super().gramian()


class Rows(Factor):
    """Gradients that are non-zero on a few rows of a (V, ...) table (embeddings).

    Args:
        compact: per-loss gradients restricted to the rows listed in ``rows``: (m, U, ...).
        rows: the (U,) distinct row indices, sorted.
        shape: the parameter's shape (V, ...).
    """

    def __init__(self, compact: Tensor, rows: Tensor, shape: torch.Size):
        self.compact, self.rows, self.shape = compact, rows, shape
        self.dtype = compact.dtype

    def gramian(self) -> Tensor:
        c = _rows(self.compact)
        return c @ c.T

    def grads(self) -> Tensor:
        out = self.compact.new_zeros(self.compact.shape[0], *self.shape)
        return out.index_copy_(1, self.rows, self.compact)

    def grads_rows(self, a: int, b: int) -> Tensor:
        inside = (self.rows >= a) & (self.rows < b)
        out = self.compact.new_zeros(self.compact.shape[0], b - a, *self.shape[1:])
        return out.index_copy_(1, self.rows[inside] - a, self.compact[:, inside])

    def weighted(self, w: Tensor) -> Tensor:
        rows = torch.tensordot(w.to(self.dtype), self.compact, dims=1)
        return rows.new_zeros(self.shape).index_copy_(0, self.rows, rows)
