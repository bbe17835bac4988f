"""Language tags that mark where an L² chain of thought switches language.

The L² paper marks language boundaries with special language tokens but does not publish their form; the
format below is our default. The training collator writes these tags and the decoding-time logits processor
reads them, so both take the format from here.
"""

from __future__ import annotations

import re

from slam_trainer.languages import get_language


DEFAULT_TAG_FORMAT = "<|{lang}|>"


def language_tag(lang: str, tag_format: str = DEFAULT_TAG_FORMAT) -> str:
    """The tag text for `lang`, e.g. `<|zh|>` with the default format."""
    get_language(lang)
    if "{lang}" not in tag_format:
        raise ValueError(f"`tag_format` must contain '{{lang}}', got {tag_format!r}.")
    return tag_format.format(lang=lang)


def tag_pattern(tag_format: str = DEFAULT_TAG_FORMAT) -> re.Pattern:
    """A regex whose group `lang` captures the language code of any tag in `tag_format`."""
    prefix, suffix = tag_format.split("{lang}")
    return re.compile(re.escape(prefix) + r"(?P<lang>[a-z]{2,3})" + re.escape(suffix))
