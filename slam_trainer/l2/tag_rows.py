"""Train only the tag rows: the rows of the L² language tags in the input embedding and the output layer.

L² adds a handful of language tags to the vocabulary, and their rows must learn. Training the whole embedding and
`lm_head` for that costs most of SLAM's budget (SmolLM2-135M, 2 SLAM layers, 4 tags: 23.68% of the weights instead of
~3%; with tied embeddings one 28M-element tensor for 4 new rows). This module trains the tag rows alone, as PEFT's
`TrainableTokens` (TRL's `trainable_token_indices`) does for adapters.

Design (ours). A gradient mask on the whole matrix would not do: the optimizer would still hold the whole matrix and
its AdamW state (two more copies, in fp32), and weight decay shrinks rows whose gradient is zero. Instead each
matrix keeps `requires_grad=False` and gets a small trainable parameter `slam_tag_rows` (`[tags, hidden]`, started
at the tag rows' current values), and a forward hook puts it in place of the matrix's own tag rows: in the
embedding's output where the input is a tag (times the module's `embed_scale`, as Gemma scales), and in the output
layer's logit columns of the tags. No optimizer ever holds the matrix, so every other row stays bitwise as it was.
Tied embeddings are one matrix, so one small parameter serves both hooks (registered on both modules, as the tied
weight is, so that ZeRO-3 gathers it for either forward).

TRL's `SFTTrainer` (1.16) computes its loss with a fused LM head that reads `lm_head.weight` directly, past the
output layer's hook: the tag rows would learn to be read but never to be written. `SelectiveFFNTrainer` therefore
takes the loss from the model's own forward when the output layer has tag rows (full logits, as before TRL fused
them), and `SelectiveFFNCallback` stops a run in which the output layer's tag rows were not used
(`check_tag_logits_used`) instead of letting it train them silently wrong.

The trained rows are written back into the matrix (`sync_tag_rows`) whenever `state_dict()` is taken (so
`save_pretrained` writes them) and before each checkpoint (`SelectiveFFNCallback`; under ZeRO-3 the trainer saves
without `state_dict()`). The small parameters never appear in a state dict, and `load_state_dict` refills them from
the matrix, so a resumed run continues from the saved rows. When training ends the callback removes them
(`remove_tag_rows`), leaving a plain model whose matrices hold the trained rows: ZeRO-3 gathers every parameter a
module has when it saves the full model, and would otherwise save them as weights of their own (checkpoints saved
during a ZeRO-3 run do hold them, which `from_pretrained` ignores with a warning; resuming restores them).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slam_trainer.distributed import full_shape, gathered
from slam_trainer.errors import ConfigError, ModelError


TAG_ROWS = "slam_tag_rows"  # the small trainable parameter, on the embedding and the output layer
TAG_IDS = "slam_tag_ids"  # its token ids, sorted: a non-persistent buffer beside it
TAG_TOKENS_ATTR = "slam_tag_tokens"  # {tag: token id}, recorded on the model by `add_language_tokens`
_HOOKS_ATTR = "_slam_tag_row_hooks"
_LOGITS_SEEN_ATTR = "_slam_tag_logits_seen"  # set by the output layer's hook: the tag rows took part in a forward


def record_tag_tokens(model: nn.Module, tokens: dict[str, int]) -> None:
    """Remember on `model` which tokens are tags, so that SLAM's freezing trains their rows and the delta carries
    them (called by `add_language_tokens`)."""
    setattr(model, TAG_TOKENS_ATTR, {**getattr(model, TAG_TOKENS_ATTR, {}), **tokens})


def tag_tokens(model: nn.Module) -> dict[str, int]:
    """The tags recorded on `model` (`{tag: token id}`, by id), empty when none were added."""
    return dict(sorted(getattr(model, TAG_TOKENS_ATTR, {}).items(), key=lambda item: item[1]))


def vocabulary_matrices(model: nn.Module) -> dict[str, list[nn.Module]]:
    """The input embedding's weight and, when untied, the output layer's, by parameter name, each with the modules
    that use it (a tied weight: both)."""
    names = {id(param): name for name, param in model.named_parameters() if not name.endswith(TAG_ROWS)}
    embedding, output = model.get_input_embeddings(), model.get_output_embeddings()
    matrices = {names[id(embedding.weight)]: [embedding]}
    if output is not None and getattr(output, "weight", None) is not None:
        if output.weight is embedding.weight:
            matrices[names[id(embedding.weight)]].append(output)
        else:
            matrices[names[id(output.weight)]] = [output]
    return matrices


def plan_tag_rows(model: nn.Module, trained_whole=()) -> dict[str, list[int]]:
    """The tag rows to train, by matrix name: every recorded tag, in each vocabulary matrix that does not already
    train whole (named in `trained_whole`, e.g. through `extra=["embeddings"]`)."""
    ids = sorted(tag_tokens(model).values())
    if not ids:
        return {}
    plan = {}
    for name, modules in vocabulary_matrices(model).items():
        rows = full_shape(modules[0].weight)[0]
        if ids[-1] >= rows:
            raise ModelError(
                f"The language tags have token ids up to {ids[-1]}, but `{name}` has {rows} rows: the embeddings "
                "were resized after `add_language_tokens`, or the tags were added with another model. Call "
                "`add_language_tokens(tokenizer, model, languages)` on this model."
            )
        if name not in trained_whole:
            plan[name] = ids
    return plan


def tag_row_count(model: nn.Module, plan: dict[str, list[int]]) -> int:
    """Trainable elements of `plan`: rows times hidden size, per matrix."""
    matrices = vocabulary_matrices(model)
    return sum(len(ids) * full_shape(matrices[name][0].weight)[1] for name, ids in plan.items())


def install_tag_rows(model: nn.Module, plan: dict[str, list[int]]) -> None:
    """Give each matrix of `plan` its small trainable tag-row parameter and the hooks that use it (replacing those
    of an earlier call)."""
    remove_tag_rows(model)
    hooks = []
    for name, modules in vocabulary_matrices(model).items():
        if name not in plan:
            continue
        weight = modules[0].weight
        ids = torch.tensor(plan[name], dtype=torch.long, device=weight.device)
        with gathered(weight), torch.no_grad():
            rows = nn.Parameter(weight[ids].clone(), requires_grad=True)
        for module in modules:
            module.register_parameter(TAG_ROWS, rows)
            module.register_buffer(TAG_IDS, ids, persistent=False)
            is_embedding = module is model.get_input_embeddings()
            hooks.append(module.register_forward_hook(_embedding_hook if is_embedding else _logits_hook))
            hooks.append(module.register_state_dict_pre_hook(_sync_before_saving))
            hooks.append(module.register_state_dict_post_hook(_drop_from_state_dict))
            hooks.append(module.register_load_state_dict_post_hook(_refill_after_loading))
    setattr(model, _HOOKS_ATTR, hooks)


def remove_tag_rows(model: nn.Module) -> None:
    """Undo `install_tag_rows` (the rows trained so far are written into the matrices first)."""
    sync_tag_rows(model)
    for handle in getattr(model, _HOOKS_ATTR, []):
        handle.remove()
    for module in _modules_with_tag_rows(model):
        delattr(module, TAG_ROWS)
        delattr(module, TAG_IDS)
    setattr(model, _HOOKS_ATTR, [])


def _modules_with_tag_rows(model: nn.Module) -> list[nn.Module]:
    return [module for module in model.modules() if getattr(module, TAG_ROWS, None) is not None]


def installed_tag_rows(model: nn.Module) -> dict[str, nn.Parameter]:
    """The small tag-row parameters, by the name of the matrix they belong to (one for a tied pair)."""
    installed = {}
    for name, modules in vocabulary_matrices(model).items():
        rows = getattr(modules[0], TAG_ROWS, None)
        if rows is not None:
            installed[name] = rows
    return installed


def sync_tag_rows(model: nn.Module) -> None:
    """Write the trained tag rows into their matrices, so that the matrices alone hold the trained model. Under
    ZeRO-3 every rank must call this (the matrices are gathered)."""
    done = set()
    for module in _modules_with_tag_rows(model):
        if id(module.weight) not in done:
            done.add(id(module.weight))
            _write_back(module, modifier_rank=0)


def _write_back(module: nn.Module, modifier_rank=None) -> None:
    rows, ids = getattr(module, TAG_ROWS), getattr(module, TAG_IDS)
    with gathered(module.weight, modifier_rank=modifier_rank), gathered(rows), torch.no_grad():
        module.weight.index_copy_(0, ids.to(module.weight.device), rows.detach().to(module.weight))


def _embedding_hook(module, args, output):
    rows, ids = getattr(module, TAG_ROWS), getattr(module, TAG_IDS)
    input_ids = args[0]
    slot = torch.searchsorted(ids, input_ids).clamp_(max=len(ids) - 1)
    is_tag = ids[slot] == input_ids
    tag_rows = rows[slot].to(module.weight.dtype)
    scale = getattr(module, "embed_scale", None)  # Gemma's scaled embeddings multiply in their forward
    if scale is not None:
        tag_rows = tag_rows * scale.to(module.weight.dtype)
    return torch.where(is_tag.unsqueeze(-1), tag_rows.to(output.dtype), output)


def _logits_hook(module, args, output):
    setattr(module, _LOGITS_SEEN_ATTR, True)
    rows, ids = getattr(module, TAG_ROWS), getattr(module, TAG_IDS)
    hidden = args[0]
    bias = module.bias[ids] if getattr(module, "bias", None) is not None else None
    tag_logits = F.linear(hidden, rows.to(hidden.dtype), None if bias is None else bias.to(hidden.dtype))
    return output.index_copy_(-1, ids, tag_logits.to(output.dtype))  # in place: no second copy of the logits


def has_output_tag_rows(model: nn.Module) -> bool:
    """Whether the output layer gets its tag rows from the small parameter (its forward hook)."""
    output = model.get_output_embeddings()
    return output is not None and getattr(output, TAG_ROWS, None) is not None


def check_tag_logits_used(model: nn.Module) -> None:
    """Refuse an optimizer step for which the output layer never ran through its hook: the loss was computed from
    `lm_head.weight` directly (TRL's fused LM head), so the tag rows' output side got no gradient."""
    if not model.training or not has_output_tag_rows(model):
        return
    output = model.get_output_embeddings()
    if not getattr(output, _LOGITS_SEEN_ATTR, False):
        raise ConfigError(
            "The L² tag rows of the output layer took no part in this training step: the trainer computes its loss "
            "from `lm_head.weight` directly (TRL's `SFTTrainer` fuses the LM head), past the hook that puts the "
            "trained tag rows in place. Use `SelectiveFFNTrainer` (it takes the loss from the model's own forward "
            "then), or train the output layer whole (`extra=['lm_head']`)."
        )
    setattr(output, _LOGITS_SEEN_ATTR, False)


def _sync_before_saving(module, prefix, keep_vars):
    if not hasattr(module.weight, "ds_id"):  # a ZeRO-3 model is saved by DeepSpeed, after `sync_tag_rows`
        _write_back(module)


def _drop_from_state_dict(module, state_dict, prefix, local_metadata):
    state_dict.pop(prefix + TAG_ROWS, None)


def _refill_after_loading(module, incompatible_keys):
    key = next((k for k in incompatible_keys.missing_keys if k.endswith("." + TAG_ROWS) or k == TAG_ROWS), None)
    if key is not None:
        incompatible_keys.missing_keys.remove(key)
    rows, ids = getattr(module, TAG_ROWS), getattr(module, TAG_IDS)
    if not hasattr(rows, "ds_id"):  # under ZeRO-3, DeepSpeed restores the parameter itself
        with torch.no_grad():
            rows.copy_(module.weight[ids])
