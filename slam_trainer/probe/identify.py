"""`identify_language_layers`: which decoder layers' FFNs behave most differently across languages.

One batched forward pass over parallel text with counting hooks (`counting.py`), then the per-layer scores
(`scores.py`), the choice of the `num_layers` best layers of the region, and the stability of that choice under
bootstrap resampling of the items (`stability.py`), returned as a `LayerReport`.
"""

from __future__ import annotations

import sys
import warnings

from slam_trainer.architectures import get_architecture_map
from slam_trainer.errors import ConfigError
from slam_trainer.probe.batches import make_batches, tokenize_parallel
from slam_trainer.probe.counting import ActivationCounts, count_activations
from slam_trainer.probe.parallel import load_parallel_texts
from slam_trainer.probe.report import LayerReport
from slam_trainer.probe.scores import all_scores, choose_layers, layer_score, rank_layers
from slam_trainer.probe.settings import BOOTSTRAP_UNITS, DEFAULTS, check_probe_settings, region_layers
from slam_trainer.probe.stability import bootstrap_stability, describe_stability


def describe_probe(model, languages: list[str], items: int, batches) -> str:
    """The start line of a probe: its size, and what the time estimate rests on."""
    fed = sum(int(batch.input_ids.numel()) for batch in batches)
    return (
        f"Probing {type(model).__name__} on {items} parallel items in {len(languages)} languages: {fed:,} tokens in "
        f"{len(batches)} forward passes (the bar shows the time left)."
    )


def candidate_layers(total: int, num_layers: int, region: str) -> list[int]:
    """Layers eligible for the choice; checks `num_layers` against them before any forward pass."""
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
        raise ConfigError(f"`num_layers` must be a positive integer, got {num_layers!r}.")
    candidates = region_layers(total, region)
    if num_layers > len(candidates):
        where = (
            f"the lower half of the model ({len(candidates)} of {total} layers)"
            if region == "lower_half"
            else f"the model's {total} decoder layers"
        )
        raise ConfigError(f"`num_layers`={num_layers} is more than {where}; choose at most {len(candidates)}.")
    return candidates


def build_report(
    counts: ActivationCounts,
    model_class: str,
    *,
    num_layers: int = DEFAULTS["num_layers"],
    score: str = DEFAULTS["score"],
    pivot: str | None = None,
    region: str = DEFAULTS["region"],
    top_rate: float = DEFAULTS["top_rate"],
    activation_bar_ratio: float = DEFAULTS["activation_bar_ratio"],
    active_threshold: float | None = None,
    resamples: int = DEFAULTS["resamples"],
    seed: int = DEFAULTS["seed"],
    settings: dict | None = None,
) -> LayerReport:
    """Scores, choice and stability from activation counts (the part of `identify_language_layers` after the
    forward pass); warns when the choice is not stable."""
    languages = counts.languages
    pivot = pivot if pivot is not None else ("en" if "en" in languages else languages[0])
    candidates = candidate_layers(len(counts.unit_active), num_layers, region)
    options = {
        "top_rate": top_rate,
        "activation_bar_ratio": activation_bar_ratio,
        "active_threshold": active_threshold,
    }
    stats = all_scores(counts.probabilities(), languages.index(pivot), **options)
    scores = {name: stats[name].tolist() for name in ("lape", "overlap", "activated_msd", "overlap_msd")}
    ranking = rank_layers(scores[score], candidates)
    chosen = choose_layers(scores[score], candidates, num_layers)

    def choose(probs):
        resampled = layer_score(probs, score, languages.index(pivot), **options).tolist()
        return choose_layers(resampled, candidates, num_layers)

    stability = bootstrap_stability(counts, choose, chosen, resamples=resamples, seed=seed)
    if stability is not None and not stability["stable"]:
        warnings.warn(f"{model_class}: {describe_stability(stability, chosen)}", stacklevel=3)
    return LayerReport(
        model_class=model_class,
        languages=list(languages),
        pivot=pivot,
        score=score,
        region=region,
        chosen_layers=chosen,
        ranking=ranking,
        scores=scores,
        lape_neurons=stats["lape_neurons"].tolist(),
        activated=stats["activated"].tolist(),
        overlap=stats["overlap_by_language"].tolist(),
        neurons=[layer.shape[1] for layer in counts.unit_active],
        tokens=dict(zip(languages, counts.tokens.tolist())),
        stability=stability,
        settings={
            "top_rate": top_rate,
            "activation_bar_ratio": activation_bar_ratio,
            "activation_bar": stats["bar"],
            "active_threshold": stats["active_threshold"],
            "num_layers": num_layers,
            **(settings or {}),
        },
    )


def check_probe_inputs(model, texts_by_lang, pivot, languages, text_column, options, batch_size, max_length):
    """Step 1, before any forward pass: the settings (`options` as `build_report` takes them), the region's room
    for `num_layers`, and the parallel texts, loaded and aligned, with the pivot among their languages. Returns the
    architecture map and the texts."""
    check_probe_settings(**options, batch_size=batch_size, max_length=max_length)
    architecture = get_architecture_map(model)
    candidate_layers(architecture.num_layers, options["num_layers"], options["region"])
    parallel = load_parallel_texts(texts_by_lang, languages=languages, text_column=text_column)
    if pivot is not None and pivot not in parallel.languages:
        raise ConfigError(f"`pivot` {pivot!r} is not among the probe languages {parallel.languages}.")
    return architecture, parallel


def measure_activations(model, tokenizer, parallel, batch_size, max_length, resamples, progress):
    """Step 2, the one forward pass: tokenize (dropping over-long items in every language), batch per language in
    bootstrap units, and count the FFN activations. Returns the counts and the run's facts for the report."""
    tokenized = tokenize_parallel(tokenizer, parallel, max_length=max_length)
    units = min(len(tokenized.ids), BOOTSTRAP_UNITS) if resamples else 1
    batches = make_batches(tokenizer, tokenized, batch_size=batch_size, units=units)
    if progress:
        print(describe_probe(model, parallel.languages, len(tokenized.ids), batches), file=sys.stderr)
    counts = count_activations(model, batches, parallel.languages, progress=progress)
    run = {"items": len(tokenized.ids), "items_over_max_length": tokenized.over_length}
    return counts, {**run, "batch_size": batch_size, "max_length": max_length}


def identify_language_layers(
    model,
    tokenizer,
    texts_by_lang,
    num_layers: int = DEFAULTS["num_layers"],
    score: str = DEFAULTS["score"],
    *,
    languages: list[str] | None = None,
    pivot: str | None = None,
    region: str = DEFAULTS["region"],
    top_rate: float = DEFAULTS["top_rate"],
    activation_bar_ratio: float = DEFAULTS["activation_bar_ratio"],
    active_threshold: float | None = None,
    batch_size: int = DEFAULTS["batch_size"],
    max_length: int = DEFAULTS["max_length"],
    resamples: int = DEFAULTS["resamples"],
    seed: int = DEFAULTS["seed"],
    text_column: str | None = None,
    progress: bool = False,
) -> LayerReport:
    """Find the decoder layers whose FFN neurons are most language-specific (the SLAM layer analysis).

    `slam identify` and `slam_layers="auto"` call this with the same defaults (`slam_trainer.probe.settings`, which
    says which are ours).

    Parameters:
        model (`PreTrainedModel`):
            A causal LM (dense, gated, GPT-2-style or MoE), plain, PEFT-wrapped or sharded with `device_map="auto"`,
            in any dtype. It is put in eval mode for the pass and restored after.
        tokenizer (`PreTrainedTokenizerBase`):
            The model's tokenizer. Its `padding_side` is used; padding and special tokens never count.
        texts_by_lang (`dict`, `datasets.Dataset`, `list[dict]` or `str`):
            Parallel texts: `{lang: [texts]}` aligned by position, `{lang: {id: text}}`, or rows with `id`, `lang`
            and `text`/`question` (a `Dataset`, a list, or a `.jsonl`/`.json` path such as MGSM's or MSVAMP's
            file). Ids missing from some language are dropped with a warning.
        num_layers (`int`, *optional*, defaults to `6`): How many layers to choose (SLAM tunes 6).
        score (`str`, *optional*, defaults to `"lape"`):
            The score to choose by: `"lape"`, `"overlap"`, `"activated_msd"` or `"overlap_msd"`
            (`slam_trainer.probe.scores`). All are computed and reported either way.
        languages (`list[str]`, *optional*): Use only these languages of the data, in this order.
        pivot (`str`, *optional*):
            Language the overlaps are measured against; defaults to `"en"` if present, else the first (ours).
        region (`str`, *optional*, defaults to `"lower_half"`):
            Where the layers may be chosen: `"lower_half"` (SLAM's claim; our default) or `"all"` (LAPE's view).
            Scores are reported for every layer either way.
        top_rate (`float`, *optional*, defaults to `0.01`): LAPE's share of neurons deemed language-specific.
        activation_bar_ratio (`float`, *optional*, defaults to `0.95`): LAPE's activation-probability quantile.
        active_threshold (`float`, *optional*):
            Activation probability above which a neuron counts as activated for a language (activated counts,
            overlaps); defaults to the LAPE bar (ours).
        batch_size (`int`, *optional*, defaults to `8`): Texts per forward pass; each batch holds one language.
        max_length (`int`, *optional*, defaults to `2048`):
            Items longer than this many tokens in any language are dropped from every language, with a warning
            (texts are never cut, so they stay parallel).
        resamples (`int`, *optional*, defaults to `100`):
            Bootstrap resamples of the items for `report.stability` (reusing the one pass's counts); `0` turns it off.
        seed (`int`, *optional*, defaults to `0`): Seed of the bootstrap draws.
        text_column (`str`, *optional*): Text column of row-shaped data; defaults to `text`, else `question`.
        progress (`bool`, *optional*, defaults to `False`): Show a progress bar over the batches.

    Returns:
        `LayerReport`: every score per layer, per-language counts, the chosen layers and their stability;
        `.save(output_dir)` writes the JSON and the PNG heatmap.

    Raises:
        `ValueError`: before any forward pass, for a setting out of range, `num_layers` larger than the region,
        fewer than two languages, non-parallel lists, a `pivot` not among the languages, a language without text,
        or no item within `max_length`.
    """
    options = {"num_layers": num_layers, "score": score, "region": region, "resamples": resamples}
    options.update(top_rate=top_rate, activation_bar_ratio=activation_bar_ratio)
    architecture, parallel = check_probe_inputs(
        model, texts_by_lang, pivot, languages, text_column, options, batch_size, max_length
    )
    counts, run = measure_activations(model, tokenizer, parallel, batch_size, max_length, resamples, progress)
    facts = {"pivot": pivot, "active_threshold": active_threshold, "seed": seed, "settings": run}
    return build_report(counts, architecture.model_class, **facts, **options)
