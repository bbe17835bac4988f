"""What counts as an active FFN neuron: its non-linearity's output is > 0, the LAPE criterion, for every activation.

LAPE (RUCAIBox/Language-Specific-Neurons, `activation.py`) counts a neuron as active on a token when
`act(gate) > 0`, written for SiLU. The activations of the models the probe supports all share one property that
makes this criterion the same question everywhere: **act(x) > 0 exactly when x > 0** (they are sign-preserving).
So "active" means "the gate pre-activation is positive", whatever the function:

| activation (`hidden_act`) | output for x < 0 | active |
| --- | --- | --- |
| SiLU (`silu`: Llama, Qwen, Mistral, SmolLM2) | negative, minimum −0.278 at x ≈ −1.28; −0 far below | x > 0 |
| GELU-tanh, GELU (`gelu_pytorch_tanh`: Gemma; `gelu_new`: GPT-2) | negative, minimum −0.170 at x ≈ −0.75 | x > 0 |
| ReLU, ReLU², ReLU6 (`relu`: OPT) | 0 | x > 0 |
| quick GELU, Mish, hard-swish, leaky ReLU, tanh | negative | x > 0 |

The small negative outputs of SiLU and GELU-tanh count as *inactive*, as LAPE counts SiLU's. We do not use a
magnitude bar (|act| > ε) instead: it would need a scale per model and per layer, and no published method uses one.

An activation that is positive for negative inputs (sigmoid, `laplace`, `sqrtsoftplus`, xIELU far below zero) would
make `act > 0` mark neurons that the gate switched off, so the probe refuses it with an error rather than count
something else. The check runs the activation module on a fixed grid of inputs when the hooks are installed.
"""

from __future__ import annotations

import torch
from torch import nn

from slam_trainer.errors import ModelError


# Inputs on both sides of 0, from far below (where SiLU/GELU round to -0) to far above, and 0 itself.
SIGN_GRID = (-1e4, -30.0, -5.0, -1.0, -0.1, -1e-3, 0.0, 1e-3, 0.1, 1.0, 5.0, 30.0, 1e4)


def check_sign_preserving(module: nn.Module, name: str) -> None:
    """Refuse an activation module for which `act(x) > 0` does not mean `x > 0` (see the module docstring).

    Parameters:
        module (`nn.Module`): the FFN non-linearity the probe hooks (`act_fn`, `act`, ...).
        name (`str`): its dotted name in the model, for the error message.

    Raises:
        `ValueError`: the activation is positive for a negative input, non-positive for a positive one, or is not
        a one-argument function of the gate.
    """
    parameter = next(module.parameters(), None)
    device, dtype = (parameter.device, parameter.dtype) if parameter is not None else ("cpu", torch.float32)
    grid = torch.tensor(SIGN_GRID, device=device, dtype=dtype)
    problem = None
    try:
        with torch.no_grad():
            output = module(grid)
    except TypeError as error:
        problem = f"it is not a one-argument function of the gate ({error})"
    else:
        wrong = [x for x, y in zip(SIGN_GRID, output.tolist()) if (y > 0) != (x > 0)]
        if wrong:
            problem = f"act(x) > 0 does not mean x > 0 (wrong sign at x = {wrong})"
    if problem is not None:
        raise ModelError(
            f"The probe counts a neuron as active when its activation is > 0, which needs a sign-preserving "
            f"activation; `{name}` ({type(module).__name__}) is not: {problem}. Choose `slam_layers` by hand."
        )
