"""The embedded default: a byte-level tokenizer and tiny models built in-process.

No model or tokenizer hub is needed: the demo, the tests and the CPU recipes run on these. The tokenizer maps
every UTF-8 byte to one token (so every script of every shipped language round-trips) plus a few special tokens,
and carries a minimal chat template; the models are randomly initialised from small configs of real architectures.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

from slam_trainer.errors import ConfigError


SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}Human: {{ message['content'] }}\n"
    "{% elif message['role'] == 'assistant' %}Assistant: {{ message['content'] }}{{ eos_token }}\n"
    "{% else %}{{ message['content'] }}\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant: {% endif %}"
)

# Small but real shapes per architecture: 2 heads of 16, FFN 4x hidden, 4 layers unless overridden.
_ARCHITECTURE_KWARGS = {
    "llama": {},
    "mistral": {},
    "qwen2": {},
    "qwen3": {"head_dim": 16},
    "gemma": {"head_dim": 16},
    "gemma2": {"head_dim": 16},
    "gemma3_text": {"head_dim": 16},
    "phi3": {},
    "mixtral": {"num_local_experts": 4, "num_experts_per_tok": 2},
    "qwen2_moe": {
        "num_experts": 4,
        "num_experts_per_tok": 2,
        "moe_intermediate_size": 32,
        "shared_expert_intermediate_size": 64,
    },
    "qwen3_moe": {"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32, "head_dim": 16},
    # Interleaved gate/up expert banks with biases; YaRN's factor 32 over 4096 positions, as the released config.
    "gpt_oss": {"num_local_experts": 4, "num_experts_per_tok": 2, "head_dim": 16, "max_position_embeddings": 131072},
    "gpt2": {},
    "gpt_neox": {},
    "opt": {},
}
# Families the layer-identification probe cannot read (gpt-oss applies its gate inline: no activation module to
# hook). They map, freeze and train like the others but stay out of TINY_ARCHITECTURES, which every part covers.
UNPROBED_ARCHITECTURES = ("gpt_oss",)
TINY_ARCHITECTURES = tuple(name for name in _ARCHITECTURE_KWARGS if name not in UNPROBED_ARCHITECTURES)


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer: 256 byte tokens + `<pad>`, `<s>`, `</s>`, `<unk>`; pads on the right."""
    byte_vocab = pre_tokenizers.ByteLevel.alphabet()
    vocab = {token: index for index, token in enumerate(sorted(byte_vocab))}
    vocab.update({token: len(byte_vocab) + index for index, token in enumerate(SPECIAL_TOKENS.values())})
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None))
    backend.add_special_tokens(list(SPECIAL_TOKENS.values()))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **SPECIAL_TOKENS)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_config(
    architecture: str = "llama", *, vocab_size: int = 260, hidden_size: int = 32, num_layers: int = 4, **overrides
):
    """A small config of a real architecture (see `TINY_ARCHITECTURES`), sized for CPU tests and the demo."""
    if architecture not in _ARCHITECTURE_KWARGS:
        raise ConfigError(
            f"Unknown tiny architecture {architecture!r}; choose from {', '.join(_ARCHITECTURE_KWARGS)}."
        )
    kwargs = {
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "intermediate_size": 4 * hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "max_position_embeddings": 1024,
        # The tokenizer's special tokens follow the 256 byte tokens in the order of `SPECIAL_TOKENS`.
        "pad_token_id": 256,
        "bos_token_id": 257,
        "eos_token_id": 258,
        "tie_word_embeddings": False,
        **_ARCHITECTURE_KWARGS[architecture],
    }
    if architecture == "gpt2":
        kwargs.update(n_embd=hidden_size, n_layer=num_layers, n_head=2, n_positions=1024, n_inner=4 * hidden_size)
    if architecture == "opt":
        kwargs.update(ffn_dim=4 * hidden_size, word_embed_proj_dim=hidden_size)
    kwargs.update(overrides)
    return AutoConfig.for_model(architecture, **kwargs)


def build_tiny_model(architecture: str = "llama", *, seed: int = 0, **config_overrides):
    """A randomly initialised causal LM of `architecture` (fp32, CPU), reproducible from `seed`."""
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(architecture, **config_overrides))
    model.generation_config.pad_token_id = model.config.pad_token_id
    return model
