"""`identify_language_layers`: which decoder layers' FFNs behave most differently across languages.

One batched forward pass over parallel text with counting hooks (`counting.py`), then the per-layer scores
(`scores.py`) and the choice of the `num_layers` best layers, returned as a `LayerReport`.
"""

from __future__ import annotations

from slam_trainer.architectures import get_architecture_map
from slam_trainer.probe.batches import make_batches
from slam_trainer.probe.counting import ActivationCounts, count_activations
from slam_trainer.probe.parallel import load_parallel_texts
from slam_trainer.probe.report import LayerReport
from slam_trainer.probe.scores import SCORES, lape, lower_half, overlap_statistics, rank_layers


def candidate_layers(total: int, num_layers: int, restrict_lower_half: bool) -> list[int]:
    """Layers eligible for the choice; checks `num_layers` against them before any forward pass."""
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"`num_layers` must be a positive integer, got {num_layers!r}.")
    candidates = lower_half(total) if restrict_lower_half else list(range(total))
    if num_layers > len(candidates):
        where = (
            f"the lower half of the model ({len(candidates)} of {total} layers)"
            if restrict_lower_half
            else f"the model's {total} decoder layers"
        )
        raise ValueError(f"`num_layers`={num_layers} is more than {where}; choose at most {len(candidates)}.")
    return candidates


def build_report(
    counts: ActivationCounts,
    model_class: str,
    *,
    num_layers: int = 6,
    score: str = "lape",
    pivot: str | None = None,
    restrict_lower_half: bool = False,
    top_rate: float = 0.01,
    activation_bar_ratio: float = 0.95,
    active_threshold: float | None = None,
    settings: dict | None = None,
) -> LayerReport:
    """Scores and choice from activation counts (the part of `identify_language_layers` after the forward pass)."""
    languages = counts.languages
    pivot = pivot if pivot is not None else ("en" if "en" in languages else languages[0])
    candidates = candidate_layers(len(counts.active), num_layers, restrict_lower_half)
    probs = counts.probabilities()
    lape_stats = lape(probs, top_rate=top_rate, activation_bar_ratio=activation_bar_ratio)
    threshold = lape_stats["bar"] if active_threshold is None else active_threshold
    overlap_stats = overlap_statistics(probs, languages.index(pivot), threshold)
    scores = {
        "lape": lape_stats["lape"].tolist(),
        "overlap": overlap_stats["overlap"].tolist(),
        "activated_msd": overlap_stats["activated_msd"].tolist(),
        "overlap_msd": overlap_stats["overlap_msd"].tolist(),
    }
    ranking = rank_layers(scores[score], candidates)
    return LayerReport(
        model_class=model_class,
        languages=list(languages),
        pivot=pivot,
        score=score,
        chosen_layers=sorted(ranking[:num_layers]),
        ranking=ranking,
        scores=scores,
        lape_neurons=lape_stats["lape_neurons"].tolist(),
        activated=overlap_stats["activated"].tolist(),
        overlap=overlap_stats["overlap_by_language"].tolist(),
        neurons=[layer.shape[0] for layer in counts.active],
        tokens=dict(zip(languages, counts.tokens.tolist())),
        settings={
            "top_rate": top_rate,
            "activation_bar_ratio": activation_bar_ratio,
            "activation_bar": lape_stats["bar"],
            "active_threshold": threshold,
            "lower_half": restrict_lower_half,
            "num_layers": num_layers,
            **(settings or {}),
        },
    )


def identify_language_layers(
    model,
    tokenizer,
    texts_by_lang,
    num_layers: int = 6,
    score: str = "lape",
    *,
    languages: list[str] | None = None,
    pivot: str | None = None,
    lower_half: bool = False,
    top_rate: float = 0.01,
    activation_bar_ratio: float = 0.95,
    active_threshold: float | None = None,
    batch_size: int = 8,
    max_length: int = 256,
    text_column: str | None = None,
    progress: bool = False,
) -> LayerReport:
    """Find the decoder layers whose FFN neurons are most language-specific (the SLAM layer analysis).

    Parameters:
        model (`PreTrainedModel`):
            A causal LM (dense, gated, GPT-2-style or MoE), plain, PEFT-wrapped or sharded with `device_map="auto"`,
            in any dtype. It is put in eval mode for the pass and restored after.
        tokenizer (`PreTrainedTokenizerBase`):
            The model's tokenizer. Its `padding_side` is used; padding and special tokens never count.
        texts_by_lang (`dict`, `datasets.Dataset`, `list[dict]` or `str`):
            Parallel texts: `{lang: [texts]}` aligned by position, `{lang: {id: text}}`, or rows with `id`, `lang`
            and `text`/`question` (a `Dataset`, a list, or a `.jsonl`/`.json` path). Ids missing from some language
            are dropped with a warning.
        num_layers (`int`, *optional*, defaults to `6`):
            How many layers to choose (SLAM tunes 6).
        score (`str`, *optional*, defaults to `"lape"`):
            The score to choose by: one of `"lape"`, `"overlap"`, `"activated_msd"`, `"overlap_msd"` (see
            `slam_trainer.probe.scores`). All are computed and reported either way.
        languages (`list[str]`, *optional*):
            Use only these languages of the data, in this order.
        pivot (`str`, *optional*):
            Language the overlaps are measured against; defaults to `"en"` if present, else the first language
            (our default).
        lower_half (`bool`, *optional*, defaults to `False`):
            Choose only among the lower half of the layers, as the SLAM paper argues language alignment happens
            there. Scores are still reported for every layer.
        top_rate (`float`, *optional*, defaults to `0.01`):
            LAPE: share of all neurons, lowest entropy first, deemed language-specific (the LAPE code's value).
        activation_bar_ratio (`float`, *optional*, defaults to `0.95`):
            LAPE: quantile of all activation probabilities used as the bar (the LAPE code's value).
        active_threshold (`float`, *optional*):
            Activation probability above which a neuron counts as activated for a language (activated counts,
            overlaps); defaults to the LAPE bar (our default).
        batch_size (`int`, *optional*, defaults to `8`):
            Texts per forward pass; each batch holds one language.
        max_length (`int`, *optional*, defaults to `256`):
            Texts are truncated to this many tokens (our default).
        text_column (`str`, *optional*):
            Text column of row-shaped data; defaults to `text`, else `question`.
        progress (`bool`, *optional*, defaults to `False`):
            Show a progress bar over the batches.

    Returns:
        `LayerReport`: every score per layer, per-language counts and the chosen layers; `.save(output_dir)` writes
        the JSON and the PNG heatmap.

    Raises:
        `ValueError`: before any forward pass, for an unknown `score`, `num_layers` larger than the candidate
        layers, fewer than two languages, non-parallel lists, a `pivot` not among the languages, or a language
        without text.
    """
    if score not in SCORES:
        raise ValueError(f"`score` is {score!r}; choose one of {', '.join(SCORES)}.")
    if not 0 < top_rate <= 1:
        raise ValueError(f"`top_rate` must be in (0, 1], got {top_rate}.")
    if not 0 < activation_bar_ratio < 1:
        raise ValueError(f"`activation_bar_ratio` must be in (0, 1), got {activation_bar_ratio}.")
    architecture = get_architecture_map(model)
    candidate_layers(architecture.num_layers, num_layers, lower_half)
    parallel = load_parallel_texts(texts_by_lang, languages=languages, text_column=text_column)
    if pivot is not None and pivot not in parallel.languages:
        raise ValueError(f"`pivot` {pivot!r} is not among the probe languages {parallel.languages}.")
    batches = make_batches(tokenizer, parallel, batch_size=batch_size, max_length=max_length)
    counts = count_activations(model, batches, parallel.languages, progress=progress)
    return build_report(
        counts,
        architecture.model_class,
        num_layers=num_layers,
        score=score,
        pivot=pivot,
        restrict_lower_half=lower_half,
        top_rate=top_rate,
        activation_bar_ratio=activation_bar_ratio,
        active_threshold=active_threshold,
        settings={"items": len(parallel.ids), "batch_size": batch_size, "max_length": max_length},
    )
