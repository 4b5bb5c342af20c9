"""Weightings: pure functions from a Gramian to weights, one file per method.

`REGISTRY` below is the one registration of every method (its docstring says how to add one).
"""

from collections.abc import Mapping

from ._aligned_mtl import aligned_mtl
from ._cagrad import cagrad
from ._config import config
from ._constant import constant
from ._contract import Weighting, registry
from ._cr_mogm import CRMOGMState, cr_mogm, cr_mogm_init
from ._db_mtl import db_mtl
from ._dualproj import dualproj
from ._epo import epo
from ._fairgrad import fairgrad
from ._gradnorm import GradNormState, gradnorm, gradnorm_init
from ._gradvac import GradVacState, gradvac, gradvac_init
from ._imtl import IMTLState, imtl, imtl_init
from ._imtl_g import imtl_g
from ._krum import krum
from ._mean import mean
from ._mgda import mgda
from ._modo import MoDoState, modo, modo_init
from ._nash_mtl import NashMTLState, nash_mtl, nash_mtl_init
from ._orders import visiting_orders
from ._pcd import PCDState, pcd, pcd_init
from ._pcgrad import pcgrad
from ._pmtl import pmtl
from ._random import random
from ._sdmgrad import SDMGradState, sdmgrad, sdmgrad_init
from ._sum import sum  # noqa: A004
from ._upgrad import upgrad

REGISTRY: Mapping[str, Weighting] = registry(
    Weighting(mean, properties={"permutation_equivariant", "scale_invariant"}),
    Weighting(sum, properties={"permutation_equivariant", "scale_invariant"}),
    Weighting(constant, properties={"scale_invariant"}),
    Weighting(random, properties={"scale_invariant"}),
    # With their default norm_eps/reg_eps (TorchJD's), upgrad and dualproj solve a regularised
    # problem, and a Gramian of trace below norm_eps counts as zero: non-conflicting and
    # scale-invariant only with norm_eps = reg_eps = 0
    # (tests/property/test_projections_and_closed_forms.py).
    Weighting(upgrad, properties={"permutation_equivariant"}),
    Weighting(dualproj, properties={"permutation_equivariant"}),
    Weighting(mgda, properties={"non_conflicting", "permutation_equivariant", "scale_invariant"}),
    Weighting(imtl_g, properties={"permutation_equivariant", "scale_invariant"}),
    Weighting(aligned_mtl, properties={"permutation_equivariant", "scale_invariant"}),
    Weighting(cagrad, properties={"permutation_equivariant"}),
    Weighting(krum, properties={"scale_invariant"}),
    Weighting(fairgrad, properties={"permutation_equivariant"}),
    Weighting(
        nash_mtl, init=nash_mtl_init, state=NashMTLState, properties={"permutation_equivariant"}
    ),
    Weighting(config, properties={"permutation_equivariant", "scale_invariant"}),
    Weighting(pcgrad, properties={"scale_invariant"}),
    # eps is absolute; the visiting orders depend on the task indices
    Weighting(gradvac, init=gradvac_init, state=GradVacState, properties=set()),
    # as its inner weighting (pcgrad in tests/_calling.py)
    Weighting(cr_mogm, init=cr_mogm_init, state=CRMOGMState, properties={"scale_invariant"}),
    Weighting(modo, init=modo_init, state=MoDoState, properties={"permutation_equivariant"}),
    Weighting(
        sdmgrad, init=sdmgrad_init, state=SDMGradState, properties={"permutation_equivariant"}
    ),
    # objective 0 is the primary one; eps is absolute
    Weighting(pcd, init=pcd_init, state=PCDState, properties=set()),
    # permutation-equivariant with the losses permuted alongside G (test_db_mtl.py); the
    # generic check keeps the losses of tests/_calling.py fixed
    Weighting(db_mtl, properties={"scale_invariant"}),
    # both: permutation-equivariant with the losses and the state permuted alongside G
    # (the generic check starts from a fresh state); gradnorm's Adam eps is absolute
    Weighting(
        gradnorm, init=gradnorm_init, state=GradNormState, properties={"permutation_equivariant"}
    ),
    Weighting(
        imtl, init=imtl_init, state=IMTLState,
        properties={"permutation_equivariant", "scale_invariant"},
    ),
    # epo and pmtl: permutation-equivariant only when the losses and preferences are permuted
    # with G (the generic suite keeps them fixed)
    Weighting(epo, properties={"scale_invariant"}),
    Weighting(pmtl, properties={"scale_invariant"}),
)
"""Every weighting of the library by name: its function, kind, state and claimed properties.

A read-only mapping ``name -> Weighting``, in a fixed order; ``gramweight.WEIGHTINGS`` is its
plain ``name -> function`` view. Generic code reads a method's kind here instead of inspecting
signatures:

```python
entry = gw.weightings.REGISTRY[name]
kwargs = {"key": step} if entry.stochastic else {}  # plus values for entry.required
if entry.stateful:
    w, state = entry.fn(G, state, **kwargs)  # the first state from entry.init(m)
else:
    w = entry.fn(G, **kwargs)
```

This table is the one registration: it feeds ``gramweight.WEIGHTINGS``, registers the state
classes as safe globals for ``torch.load(weights_only=True)``, and holds the claims that
``tests/property/test_all_weightings.py`` checks (a comment says why a property is not claimed
where one would expect it). Building each ``Weighting`` checks the calling convention.

Adding a method ``foo``:

1. Write ``_foo.py`` (for a stateful method also ``foo_init`` and ``FooState``).
2. Import its public names above and list them in ``__all__``, and give them a line in
   ``docs/api.md``.
3. Add one line here: ``Weighting(foo, properties={...})``, or
   ``Weighting(foo, init=foo_init, state=FooState, properties={...})``.
4. Register a Jacobian-space reference in ``gramweight/testing/references/``, and give example
   values in ``REQUIRED_OPTIONS`` of ``tests/_calling.py`` if ``foo`` has a required option
   other than ``key``.

The generic tests then cover it (claims, purity, the reference, saving and reloading its
state) and fail with a message naming what is missing.
"""

# The flat API of gramweight (it star-imports this list). REGISTRY is left out: its flat view
# there is WEIGHTINGS, and gw.weightings.REGISTRY says which registry it is. ``random`` and
# ``sum`` are left out too (a star-import would shadow the builtins): gramweight imports them
# by name, and they are reached as gw.random / gw.weightings.sum.
__all__ = [
    "CRMOGMState",
    "GradNormState",
    "GradVacState",
    "IMTLState",
    "MoDoState",
    "NashMTLState",
    "PCDState",
    "SDMGradState",
    "Weighting",
    "aligned_mtl",
    "cagrad",
    "config",
    "constant",
    "cr_mogm",
    "cr_mogm_init",
    "db_mtl",
    "dualproj",
    "epo",
    "fairgrad",
    "gradnorm",
    "gradnorm_init",
    "gradvac",
    "gradvac_init",
    "imtl",
    "imtl_g",
    "imtl_init",
    "krum",
    "mean",
    "mgda",
    "modo",
    "modo_init",
    "nash_mtl",
    "nash_mtl_init",
    "pcd",
    "pcd_init",
    "pcgrad",
    "pmtl",
    "sdmgrad",
    "sdmgrad_init",
    "upgrad",
    "visiting_orders",
]
