"""Weights of every method of gramweight on the Gramian of a few random loss gradients.

Run: python examples/quickstart.py
"""

import functools
import inspect

import torch

import gramweight as gw

m, n = 4, 1000  # 4 losses, 1000 parameters
generator = torch.Generator().manual_seed(0)
J = torch.randn(m, n, generator=generator)  # one row per loss gradient
J[1] = -0.5 * J[0] + 0.1 * J[1]  # make losses 0 and 1 conflict
G = J @ J.T  # the Gramian: m x m, all a weighting needs

# Options that some methods require (everything else has defaults).
REQUIRED = {
    "constant": {"weights": [0.4, 0.3, 0.2, 0.1]},
    "cr_mogm": {"inner": functools.partial(gw.pcgrad, key=0)},  # smooths any weighting
}

print(f"Gramian of {m} gradients; cosine between gradients 0 and 1: "
      f"{float(G[0, 1] / (G[0, 0] * G[1, 1]).sqrt()):.3f}\n")
print(f"{'method':>12}  weights{' ' * 34}update norm")
for name, weighting in gw.WEIGHTINGS.items():
    kwargs = dict(REQUIRED.get(name, {}))
    if "key" in inspect.signature(weighting).parameters:
        kwargs["key"] = 0  # the random key: use the step number in training
    init = getattr(gw, f"{name}_init", None)
    if init is None:
        w = weighting(G, **kwargs)
    else:  # stateful: start from a fresh state, get the new one back
        w, state = weighting(G, init(m), **kwargs)
    update = w @ J
    print(f"{name:>12}  {str([round(x, 4) for x in w.tolist()]):<40} {float(update.norm()):10.3f}")
