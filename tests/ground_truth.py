"""The probe's ground truth: a tiny Llama whose language-specific FFN neurons sit in known layers, and its texts.

Shared by the probe, auto-mode, `slam identify` and trainer tests (a helper module, not a test module).
"""

import random

import torch

from slam_trainer.probe.batches import make_batches, tokenize_parallel
from slam_trainer.probe.parallel import load_parallel_texts
from slam_trainer.tiny import build_tiny_model


# Ground truth: four "languages", each written with its own letters, so its tokens are disjoint from the others'.
LETTERS = {"en": "abcdef", "zh": "ghijkl", "ru": "mnopqr", "th": "stuvwx"}
DESIGNED_LAYERS = [1, 4]
# Language-specific neurons per language in a designed layer; unequal so the activated counts differ.
SPECIFIC = {"en": 2, "zh": 4, "ru": 6, "th": 8}
SHARED = 2  # neurons every language fires, in every layer


def ground_truth_model(tokenizer):
    """A 6-layer Llama whose FFN neurons in `DESIGNED_LAYERS` fire for one language only.

    Each language's tokens embed along its own basis direction, padding along a fifth. Attention and FFN outputs
    are zeroed, so every layer's FFN sees the embedding itself. Gate rows: a language-specific neuron points at its
    language (and at padding, so counting padding would show), shared neurons at every language, the rest away
    from everything except, in the other layers, a few padding-only neurons.
    """
    model = build_tiny_model("llama", num_layers=6, hidden_size=32)
    directions = torch.eye(32)
    langs = list(LETTERS)
    lang_dir = {lang: directions[i] for i, lang in enumerate(langs)}
    pad_dir, everything = directions[len(langs)], directions[: len(langs) + 1].sum(0)
    with torch.no_grad():
        embeddings = model.get_input_embeddings().weight
        embeddings.zero_()
        for lang, letters in LETTERS.items():
            for token in tokenizer.convert_tokens_to_ids(list(letters)):
                embeddings[token] = lang_dir[lang]
        embeddings[tokenizer.pad_token_id] = pad_dir
        for index, layer in enumerate(model.model.layers):
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
            gate = layer.mlp.gate_proj.weight
            gate.copy_(-10 * everything.expand_as(gate))  # silent by default
            gate[:SHARED] = 10 * everything
            row = SHARED
            if index in DESIGNED_LAYERS:
                for lang in langs:
                    for _ in range(SPECIFIC[lang]):
                        gate[row] = 10 * (2 * lang_dir[lang] - everything + 2 * pad_dir)
                        row += 1
            else:
                gate[row : row + 3] = 10 * (2 * pad_dir - everything)
    return model


def probe_batches(tokenizer, texts, *, batch_size=8, units=1, max_length=2048):
    """`texts` as the probe batches them, with the parallel texts' language order."""
    parallel = load_parallel_texts(texts)
    tokenized = tokenize_parallel(tokenizer, parallel, max_length=max_length)
    return make_batches(tokenizer, tokenized, batch_size=batch_size, units=units), parallel.languages


def ground_truth_texts(items=12, seed=0):
    rng = random.Random(seed)
    lengths = [rng.randint(3, 20) for _ in range(items)]
    return {
        lang: ["".join(rng.choice(letters) for _ in range(n)) for n in lengths] for lang, letters in LETTERS.items()
    }
