"""What counts as active: act(x) > 0, accepted only where that means x > 0 (see `probe/activation.py`)."""

import pytest
import torch
from transformers.activations import ACT2FN

from slam_trainer.probe.activation import check_sign_preserving
from slam_trainer.probe.counting import count_activations
from slam_trainer.tiny import build_tiny_model
from tests.ground_truth import probe_batches


# (hidden_act, accepted): every activation transformers names, each with the verdict of the sign check.
ACTIVATION_CASES = [
    ("silu", True),
    ("swish", True),
    ("gelu", True),
    ("gelu_new", True),
    ("gelu_pytorch_tanh", True),  # Gemma: negative (down to -0.170) for every negative input, so inactive there
    ("gelu_python", True),
    ("gelu_python_tanh", True),
    ("gelu_fast", True),
    ("gelu_accurate", True),
    ("gelu_10", True),
    ("quick_gelu", True),
    ("relu", True),
    ("relu2", True),
    ("relu6", True),
    ("leaky_relu", True),
    ("prelu", True),
    ("mish", True),
    ("hardswish", True),
    ("tanh", True),
    ("linear", True),
    ("sigmoid", False),  # > 0 everywhere: every neuron would always count as active
    ("laplace", False),
    ("sqrtsoftplus", False),
    ("xielu", False),  # positive again far below zero
]


@pytest.mark.parametrize("name, accepted", ACTIVATION_CASES)
def test_activation_truth_table(name, accepted):
    module = ACT2FN[name]
    if accepted:
        check_sign_preserving(module, f"mlp.{name}")
    else:
        with pytest.raises(ValueError, match=rf"`mlp.{name}` .* is not: act\(x\) > 0 does not mean x > 0"):
            check_sign_preserving(module, f"mlp.{name}")


def test_every_transformers_activation_has_a_row():
    assert {name for name, _ in ACTIVATION_CASES} == set(ACT2FN)


def test_two_argument_gate_is_refused():
    class TwoArgumentGate(torch.nn.Module):
        def forward(self, gate, up):
            return torch.nn.functional.silu(gate) * up

    with pytest.raises(ValueError, match="not a one-argument function of the gate"):
        check_sign_preserving(TwoArgumentGate(), "experts.act_fn")


@pytest.mark.parametrize("hidden_act", ["silu", "gelu_pytorch_tanh"])
def test_counts_are_the_positive_gate_pre_activations(tokenizer, hidden_act):
    """SiLU and GELU-tanh outputs are slightly negative for negative gates; those tokens must not count."""
    model = build_tiny_model("llama", hidden_act=hidden_act)
    gates = []
    model.model.layers[0].mlp.act_fn.register_forward_hook(lambda module, args, output: gates.append(args[0]))
    texts = {"en": ["the cat sat on the mat"], "ru": ["кот сидел"]}
    batches, languages = probe_batches(tokenizer, texts)
    counts = count_activations(model, batches, languages)
    gates = [gate for gate in gates if gate.dim() == 3]  # not the sign check's 1-D grid
    for language, (batch, gate) in enumerate(zip(batches, gates)):
        counted = gate[batch.count_mask]  # [tokens, neurons]
        assert torch.equal(counts.active[0][:, language], (counted > 0).sum(0))
        negative = counted[counted < 0]
        assert negative.numel() > 0 and (model.model.layers[0].mlp.act_fn(negative) < 0).any()


def test_model_with_a_non_sign_preserving_activation_is_refused(tokenizer):
    model = build_tiny_model("llama", hidden_act="sigmoid")
    batches, languages = probe_batches(tokenizer, {"en": ["abc"], "ru": ["где"]})
    with pytest.raises(ValueError, match=r"`model.layers.0.mlp.act_fn` \(SigmoidActivation|Sigmoid"):
        count_activations(model, batches, languages)
