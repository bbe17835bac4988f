"""Language tags that mark where an L² chain of thought switches language.

The L² paper marks language boundaries with special language tokens but does not publish their form; the
format below is our default. The training collator writes these tags and the decoding-time logits processor
reads them, so both take the format from here.
"""

from __future__ import annotations

from slam_trainer.languages import LANGUAGES, get_language, validate_languages


DEFAULT_TAG_FORMAT = "<|{lang}|>"


def language_tag(lang: str, tag_format: str = DEFAULT_TAG_FORMAT) -> str:
    """The tag text for `lang`, e.g. `<|zh|>` with the default format."""
    get_language(lang)
    if "{lang}" not in tag_format:
        raise ValueError(f"`tag_format` must contain '{{lang}}', got {tag_format!r}.")
    return tag_format.format(lang=lang)


def add_language_tokens(tokenizer, model=None, languages=None, tag_format: str = DEFAULT_TAG_FORMAT) -> dict[str, int]:
    """Add the language tags as special tokens (one id each) and grow the model's embeddings to match.

    The new embedding rows are drawn around the mean of the existing ones (transformers' `mean_resizing`). They must be
    trained: with `SelectiveFFNConfig`, set `slam_extra_trainable=["embeddings", "lm_head"]`; with another trainer,
    leave the embeddings trainable.

    Parameters:
        tokenizer (`PreTrainedTokenizerBase`):
            Gets the tags as special tokens (tags already present are kept).
        model (`PreTrainedModel`, *optional*):
            Its input (and output) embeddings are resized to `len(tokenizer)` when that grew.
        languages (`list[str]`, *optional*):
            The languages to tag; all shipped languages by default.
        tag_format (`str`, *optional*, defaults to `"<|{lang}|>"`):
            The tag format the collator and the decoding processor use.

    Returns:
        `dict[str, int]`: the token id of each language's tag.
    """
    languages = validate_languages(list(LANGUAGES) if languages is None else languages)
    tags = {lang: language_tag(lang, tag_format) for lang in languages}
    tokenizer.add_tokens(list(tags.values()), special_tokens=True)
    if model is not None and model.get_input_embeddings().weight.shape[0] < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    ids = {lang: tokenizer.convert_tokens_to_ids(tag) for lang, tag in tags.items()}
    for lang, tag in tags.items():
        if tokenizer(tag, add_special_tokens=False)["input_ids"] != [ids[lang]]:
            raise ValueError(f"The tag {tag!r} does not tokenize to one token after adding it; check `tag_format`.")
    return ids
