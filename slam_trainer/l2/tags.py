"""Language tags that mark where an L² chain of thought switches language.

The L² paper marks language boundaries with special language tokens but does not publish their form; the
format below is our default. The training collator writes these tags and the decoding-time logits processor
reads them, so both take the format from here.
"""

from __future__ import annotations

from slam_trainer.errors import ConfigError
from slam_trainer.languages import LANGUAGES, get_language, validate_languages


DEFAULT_TAG_FORMAT = "<|{lang}|>"


def language_tag(lang: str, tag_format: str = DEFAULT_TAG_FORMAT) -> str:
    """The tag text for `lang`, e.g. `<|zh|>` with the default format."""
    get_language(lang)
    if "{lang}" not in tag_format:
        raise ConfigError(f"`tag_format` must contain '{{lang}}', got {tag_format!r}.")
    return tag_format.format(lang=lang)


TAG_INITS = ("name", "mean")


def add_language_tokens(
    tokenizer, model=None, languages=None, tag_format: str = DEFAULT_TAG_FORMAT, init: str = "name"
) -> dict[str, int]:
    """Add the language tags as special tokens (one id each) and grow the model's embeddings to match.

    The tags are recorded on the model: SLAM's freezing (`SelectiveFFNTrainer`, `SelectiveFFNCallback`,
    `freeze_except_ffn`) then trains their rows alone, in the input embedding and the output layer (see
    `slam_trainer.l2.tag_rows`), and the FFN delta carries them. With another trainer, leave the embeddings trainable.
    How they start (`init`) matters on a real model:

    - `"name"` (the default, **ours**): each tag's row is the mean of the rows of its language's English name
      ("Spanish" for `<|es|>`), in the input and, when untied, the output embeddings. The tags start distinct and
      where real words are.
    - `"mean"`: transformers' `mean_resizing` (rows drawn around the mean of all rows), kept for comparison. Every tag
      then starts near the mean row. With tied embeddings (SmolLM2, Gemma), learning to write a tag pulls the
      hidden state towards that mean, and the token most aligned with it wins: on SmolLM2-135M-Instruct after 80 L²
      steps (lr 1e-4) that was `<|im_end|>`, so every answer came out empty, while the tags still ranked ~570th.

    Parameters:
        tokenizer (`PreTrainedTokenizerBase`):
            Gets the tags as special tokens (tags already present are kept).
        model (`PreTrainedModel`, *optional*):
            Its input (and output) embeddings are resized to `len(tokenizer)` when that grew; only rows added now are
            initialised.
        languages (`list[str]`, *optional*):
            The languages to tag; all shipped languages by default.
        tag_format (`str`, *optional*, defaults to `"<|{lang}|>"`):
            The tag format the collator and the decoding processor use.
        init (`str`, *optional*, defaults to `"name"`):
            How new rows start: `"name"` or `"mean"` (see above).

    Returns:
        `dict[str, int]`: the token id of each language's tag.
    """
    if init not in TAG_INITS:
        raise ConfigError(f"`init` must be one of {', '.join(TAG_INITS)}, got {init!r}.")
    languages = validate_languages(list(LANGUAGES) if languages is None else languages)
    tags = {lang: language_tag(lang, tag_format) for lang in languages}
    tokenizer.add_tokens(list(tags.values()), special_tokens=True)
    ids = {lang: tokenizer.convert_tokens_to_ids(tag) for lang, tag in tags.items()}
    for lang, tag in tags.items():
        if tokenizer(tag, add_special_tokens=False)["input_ids"] != [ids[lang]]:
            raise ConfigError(f"The tag {tag!r} does not tokenize to one token after adding it; check `tag_format`.")
    if model is not None:
        from slam_trainer.distributed import full_shape
        from slam_trainer.l2.tag_rows import record_tag_tokens

        old_rows = full_shape(model.get_input_embeddings().weight)[0]  # also under ZeRO-3
        if old_rows < len(tokenizer):
            model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
            if init == "name":
                new = {lang: index for lang, index in ids.items() if index >= old_rows}
                _init_from_names(model, tokenizer, new)
        record_tag_tokens(model, {tags[lang]: index for lang, index in ids.items()})
    return ids


def _init_from_names(model, tokenizer, new_ids: dict[str, int]) -> None:
    """Set each new tag row to the mean of the rows of its language's English name (input and untied output)."""
    import torch

    from slam_trainer.distributed import gathered

    sources = {lang: tokenizer.encode(get_language(lang).name, add_special_tokens=False) for lang in new_ids}
    matrices = [model.get_input_embeddings().weight]
    output = model.get_output_embeddings()
    if output is not None and output.weight is not matrices[0]:
        matrices.append(output.weight)
    for weight in matrices:
        with gathered(weight, modifier_rank=0), torch.no_grad():
            for lang, index in new_ids.items():
                weight[index] = weight[sources[lang]].mean(0)
