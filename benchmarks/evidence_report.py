"""The evidence benchmark's results: run records → `evidence.json` (summary), `evidence.md` (tables) and the PNG.

Used by `bench_evidence.py`, which writes one record per finished unit of work to `runs.jsonl` under these keys:
`setup`, `base`, `train/{arm}/lr={rate}/seed={seed}`, `eval/{arm}/lr={rate}/seed={seed}` and `l2/{arm}/seed={seed}`.
"""

from __future__ import annotations

import statistics
from pathlib import Path


TARGET_ARMS = ("full", "slam-auto", "slam-top", "slam-random")


def train_key(arm: str, rate: float, seed: int) -> str:
    return f"train/{arm}/lr={rate:g}/seed={seed}"


def eval_key(arm: str, rate: float, seed: int) -> str:
    return f"eval/{arm}/lr={rate:g}/seed={seed}"


def l2_key(arm: str, seed: int) -> str:
    return f"l2/{arm}/seed={seed}"


def mean_accuracy(scores: dict[str, dict], languages) -> float:
    """Unweighted mean over `languages` of per-language scores (`{lang: {"accuracy": ...}}`)."""
    return statistics.mean(scores[lang]["accuracy"] for lang in languages)


def _mean(values):
    present = [value for value in values if value is not None]
    return statistics.mean(present) if present else None


# -- evidence.json ------------------------------------------------------------------------------------------------


def summarise(settings, records: dict[str, dict], selected: dict[str, float], l2_arms, mgsm_used: bool) -> dict:
    """Per arm: accuracy per language (mean over seeds, and per seed), the non-English average with its per-seed
    values and spread, English accuracy, the trainable share, step time and peak memory (medians over the arm's runs)
    as ratios to `full`; the selected rate and the validation score of every rate; L²; MGSM; the targets."""
    languages = list(settings.languages)
    others = languages[1:]
    base = records["base"]
    arms = {
        "base": {
            "accuracy": {lang: base["test"][str(base["shots"])][lang]["accuracy"] for lang in languages},
            "accuracy_by_seed": {},
            "trainable_share": 0.0,
            "prompt": f"{base['shots']}-shot",
            "accuracy_by_prompt": {
                f"{shots}-shot": {lang: scores[lang]["accuracy"] for lang in languages}
                for shots, scores in base["test"].items()
            },
        }
    }
    arms["base"]["non_english_average"] = statistics.mean(arms["base"]["accuracy"][lang] for lang in others)
    arms["base"]["english"] = arms["base"]["accuracy"]["en"]

    def median_over_runs(arm, field):
        keys = [train_key(arm, rate, seed) for rate in settings.learning_rates[arm] for seed in settings.seeds]
        return statistics.median(records[key][field] for key in keys if key in records)

    full_step, full_peak = median_over_runs("full", "step_seconds"), median_over_runs("full", "peak_rss_bytes")
    for arm, rate in selected.items():
        by_seed = {
            str(seed): {lang: records[eval_key(arm, rate, seed)]["test"][lang]["accuracy"] for lang in languages}
            for seed in settings.seeds
        }
        non_english = [statistics.mean(scores[lang] for lang in others) for scores in by_seed.values()]
        runs = [records[train_key(arm, rate, seed)] for seed in settings.seeds]
        step, peak = median_over_runs(arm, "step_seconds"), median_over_runs(arm, "peak_rss_bytes")
        arms[arm] = {
            "accuracy": {lang: statistics.mean(scores[lang] for scores in by_seed.values()) for lang in languages},
            "accuracy_by_seed": by_seed,
            "non_english_average": statistics.mean(non_english),
            "non_english_average_by_seed": non_english,
            "non_english_spread": max(non_english) - min(non_english),
            "english": statistics.mean(scores["en"] for scores in by_seed.values()),
            "trainable_params": runs[0]["trainable_params"],
            "trainable_share": runs[0]["trainable_params"] / records["setup"]["total_params"],
            "learning_rate": rate,
            "validation_by_rate": {
                f"{r:g}": mean_accuracy(records[train_key(arm, r, settings.seeds[0])]["val"], languages)
                for r in settings.learning_rates[arm]
            },
            "step_seconds": step,
            "step_time_ratio": step / full_step,
            "peak_memory_bytes": peak,
            "peak_memory_ratio": peak / full_peak,
            "final_loss": statistics.mean(run["loss_last"] for run in runs),
        }
        if runs[0]["layers"] is not None:
            arms[arm]["layers"] = runs[0]["layers"]
    summary = {
        "model": None,  # filled in by the caller, with the machine, the command and the wall time
        "world": settings.world,
        "languages": languages,
        "seeds": list(settings.seeds),
        "steps": settings.steps,
        "batch_size": settings.batch_size,
        "train_problems": settings.train_problems,
        "val_problems_per_language": settings.val_problems,
        "test_problems_per_language": settings.test_problems,
        "slam_num_layers": settings.slam_num_layers,
        "lora_rank": records["setup"]["lora_rank"],
        "arms": arms,
        "l2": l2_summary(settings, records, selected["full"], l2_arms),
        "targets": targets(arms),
    }
    if mgsm_used:
        summary["mgsm"] = mgsm_summary(settings, records, selected)
    return summary


def l2_summary(settings, records: dict, rate: float, l2_arms) -> dict:
    """Per L² arm and decoding (`baseline`, `switch`): accuracy and generated tokens per correct answer per language,
    mean over the L² seeds (None where no answer was correct); for `switch`, the share of test rows the intervention
    acted on at least once."""
    result = {"learning_rate": rate, "seeds": list(settings.l2_seeds), "arms": {}}
    for arm in l2_arms:
        runs = [records[l2_key(arm, seed)] for seed in settings.l2_seeds]
        result["arms"][arm] = {
            decoding: {
                metric: {lang: _mean([run[field][lang][metric] for run in runs]) for lang in settings.languages}
                for metric in ("accuracy", "tokens_per_correct")
            }
            for decoding, field in (("baseline", "test"), ("switch", "switch"))
        }
        result["arms"][arm]["switch"]["rows_steered"] = _mean(
            [run["steering"]["rows_steered"] / run["steering"]["rows"] for run in runs]
        )
    return result


def mgsm_summary(settings, records: dict, selected: dict) -> dict:
    """MGSM accuracy per arm and language (the first seed's run); `reported` holds the languages where the base model
    or any arm scores above zero, the only ones the report shows."""
    accuracy = {"base": {lang: records["base"]["mgsm"][lang]["accuracy"] for lang in settings.languages}}
    for arm, rate in selected.items():
        scores = records[eval_key(arm, rate, settings.seeds[0])]["mgsm"]
        accuracy[arm] = {lang: scores[lang]["accuracy"] for lang in settings.languages}
    reported = [lang for lang in settings.languages if any(scores[lang] > 0 for scores in accuracy.values())]
    return {"problems_per_language": settings.mgsm_problems, "accuracy": accuracy, "reported": reported}


def targets(arms: dict) -> dict:
    """The issue's targets (ours, from the papers' claims): each with its value and whether it is met (None: not
    measurable, with a note saying why)."""

    def target(threshold, needs, measure):
        missing = [arm for arm in needs if arm not in arms]
        if missing:
            return {"value": None, "threshold": threshold, "met": None, "note": f"arm(s) {', '.join(missing)} not run"}
        value, met, note = measure()
        return {"value": value, "threshold": threshold, "met": met, "note": note}

    def gain_kept():
        base, full, auto = (arms[arm]["non_english_average"] for arm in ("base", "full", "slam-auto"))
        if full - base <= 0:
            return None, None, f"full gains {full - base:+.3f} over base: there is no gain to keep"
        return (auto - base) / (full - base), (auto - base) / (full - base) >= 0.8, None

    def retention():
        difference = arms["slam-auto"]["english"] - arms["full"]["english"]
        return difference, difference >= -0.02, None

    def identification():
        scores = {arm: arms[arm]["non_english_average"] for arm in ("slam-auto", "slam-top", "slam-random")}
        return scores, scores["slam-auto"] > max(scores["slam-top"], scores["slam-random"]), None

    def value_at_most(field, limit):
        return lambda: (arms["slam-auto"][field], arms["slam-auto"][field] <= limit, None)

    return {
        "gain_kept": target(">= 0.8 of full's non-English gain over base", ["full", "slam-auto"], gain_kept),
        "trainable_share": target("<= 0.10", ["slam-auto"], value_at_most("trainable_share", 0.10)),
        "english_retention": target("slam-auto English >= full English - 0.02", ["full", "slam-auto"], retention),
        "step_time": target("<= 0.75 x full", ["slam-auto"], value_at_most("step_time_ratio", 0.75)),
        "identification": target(
            "slam-auto above slam-top and slam-random (reported either way)",
            ["slam-auto", "slam-top", "slam-random"],
            identification,
        ),
    }


# -- evidence.md --------------------------------------------------------------------------------------------------


def fmt(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + " --- |" * len(header),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def markdown(summary: dict) -> str:
    """`evidence.md`: what was run, on what, how long; the tables; the targets met or not."""
    sections = [_header, _setup, _gains, _arms_section, _targets_section, _sweep_section, _l2_section, _mgsm_section]
    return "\n".join(line for section in sections for line in [*section(summary), ""])


def _header(summary: dict) -> list[str]:
    machine = summary["machine"]
    resumed = summary["resumed_records"]
    return [
        f"# Evidence: SLAM and L² on {summary['model']}"
        + (" (quick smoke test on a random model: not a result)" if summary["quick"] else ""),
        "",
        f"Command: `{summary['command']}`  ",
        f"Machine: {machine['platform']}, {machine['cpus']} CPUs, torch {machine['torch']} with "
        f"{machine['torch_threads']} threads; load average {machine['load_before']:.1f} at the start and "
        f"{machine['load_after']:.1f} at the end of this invocation (other processes distort step times).  ",
        f"Wall time: {summary['wall_seconds'] / 60:.1f} min"
        + (
            f" in all; this invocation {summary['invocation_seconds'] / 60:.1f} min, resuming {resumed} records of "
            "earlier ones"
            if resumed
            else ""
        )
        + "."
        + (
            f" Over the {summary['budget_minutes']:.0f}-minute budget."
            if summary["wall_seconds"] > 60 * summary["budget_minutes"]
            else f" Within the {summary['budget_minutes']:.0f}-minute budget."
        ),
        *(
            []
            if summary["quick"]
            else [
                "",
                "How the defaults came to be, what was tried and how to read the tables: "
                "[evidence_notes.md](evidence_notes.md) (written for the default run).",
            ]
        ),
    ]


def _setup(summary: dict) -> list[str]:
    arms = summary["arms"]
    return [
        "## Set-up (every choice below is ours)",
        "",
        f"- Task: the package's synthetic `{summary['world']}` world in {', '.join(summary['languages'])}; "
        f"{summary['train_problems']} training problems, {summary['val_problems_per_language']} validation and "
        f"{summary['test_problems_per_language']} test problems per language; the three sets share no "
        "(template, numbers) pair.",
        "- Training data, the same for every arm: SLAM's one-stage set (question translation X→en + worked answers in "
        f"every language), {summary['steps']} steps of batch {summary['batch_size']}, cosine schedule, 10% warm-up, "
        "loss on the completion.",
        f"- Learning rate: each arm trains at every rate of its grid on seed {summary['seeds'][0]}; the rate with the "
        "best mean validation accuracy over all languages is selected (ties: the smaller rate) and run on the other "
        "seeds. Only the selected runs see the test problems.",
        f"- Seeds {summary['seeds']} vary the training order and LoRA initialisation, not the problems. Accuracies "
        f"are means over seeds; one test problem is {100 / summary['test_problems_per_language']:.0f} points of one "
        "language's accuracy.",
        f"- SLAM arms train up+down of {summary['slam_num_layers']} layers. LoRA: rank {summary['lora_rank']}, alpha "
        "2r, on every linear layer but the output head (the rank that trains about as many parameters as SLAM); "
        "SLAM+LoRA: the same rank on the auto layers' up+down.",
        f"- Base: no training; the {arms['base']['prompt']} prompt scored best on validation (few-shot exemplars: "
        "training problems in the question's language).",
    ]


def _gains(summary: dict) -> list[str]:
    """The headline numbers in words: each arm's change over the base model, non-English and English."""
    arms = summary["arms"]
    base = arms["base"]
    lines = [
        "## In short",
        "",
        f"Base model ({base['prompt']}): non-English average {fmt(base['non_english_average'])}, English "
        f"{fmt(base['english'])}. Change over the base model, mean over seeds (non-English average / English):",
        "",
    ]
    for arm, entry in arms.items():
        if arm != "base":
            non_english = entry["non_english_average"] - base["non_english_average"]
            english = entry["english"] - base["english"]
            lines.append(f"- {arm}: {non_english:+.3f} / {english:+.3f}")
    return lines


def _arms_section(summary: dict) -> list[str]:
    languages, arms = summary["languages"], summary["arms"]
    header = ["arm", "lr", *languages, "non-en avg (per seed)", "trainable", "step time", "peak memory", "layers"]
    rows = []
    for arm, entry in arms.items():
        per_seed = ", ".join(fmt(value) for value in entry.get("non_english_average_by_seed", []))
        rows.append(
            [
                arm + (f" ({entry['prompt']})" if "prompt" in entry else ""),
                f"{entry['learning_rate']:g}" if "learning_rate" in entry else "-",
                *(fmt(entry["accuracy"][lang]) for lang in languages),
                fmt(entry["non_english_average"]) + (f" ({per_seed})" if per_seed else ""),
                f"{100 * entry['trainable_share']:.2f}%",
                fmt(entry.get("step_time_ratio")),
                fmt(entry.get("peak_memory_ratio")),
                str(entry.get("layers", "-")),
            ]
        )
    for prompt, accuracy in arms["base"]["accuracy_by_prompt"].items():
        if prompt != arms["base"]["prompt"]:
            non_english = statistics.mean(accuracy[lang] for lang in languages[1:])
            context = [f"base ({prompt}, not selected)", "-", *(fmt(accuracy[lang]) for lang in languages)]
            rows.append([*context, fmt(non_english), "0.00%", "-", "-", "-"])
    return [
        "## Accuracy on the held-out test problems",
        "",
        *_table(header, rows),
        "",
        "Step time and peak memory: ratios to `full`, medians over each arm's runs (every run in its own process; "
        "step = forward + backward + optimizer update, median after the first; peak memory = max RSS while "
        "training).",
        "",
        "![per-language accuracy by arm](evidence.png)",
    ]


def _targets_section(summary: dict) -> list[str]:
    verdicts = {True: "met", False: "not met", None: "not measurable"}
    rows = []
    for name, target in summary["targets"].items():
        value = target["value"]
        shown = ", ".join(f"{k} {fmt(v)}" for k, v in value.items()) if isinstance(value, dict) else fmt(value, 3)
        note = f" ({target['note']})" if target["note"] else ""
        rows.append([name, target["threshold"], shown, verdicts[target["met"]] + note])
    return [
        "## Targets (ours, from the papers' claims)",
        "",
        *_table(["target", "threshold", "value", "verdict"], rows),
    ]


def _sweep_section(summary: dict) -> list[str]:
    rows = [
        [arm, rate, fmt(value), "selected" if float(rate) == entry["learning_rate"] else ""]
        for arm, entry in summary["arms"].items()
        for rate, value in entry.get("validation_by_rate", {}).items()
    ]
    return [
        f"## Learning-rate sweep (seed {summary['seeds'][0]}, mean validation accuracy over all languages)",
        "",
        *_table(["arm", "lr", "validation", ""], rows),
    ]


def _l2_section(summary: dict) -> list[str]:
    languages, l2 = summary["languages"], summary["l2"]
    rows = [
        [
            arm,
            decoding,
            *(f"{fmt(m['accuracy'][lang])} / {fmt(m['tokens_per_correct'][lang], 0)}" for lang in languages),
            fmt(statistics.mean(m["accuracy"].values())),
            fmt(m.get("rows_steered")) if decoding == "switch" else "",
        ]
        for arm, by_decoding in l2["arms"].items()
        for decoding, m in by_decoding.items()
    ]
    return [
        f"## L²: English-CoT-only SFT vs L² full-chain vs L² mixed (full fine-tuning, lr {l2['learning_rate']:g} = "
        f"`full`'s selected rate, seeds {l2['seeds']})",
        "",
        "`en-cot` trains on the English questions and chains alone (the paper's English seed data); `l2-full` and "
        "`l2-mixed` on the same problems in every language through `L2DataCollator` (whole chain per language; "
        "step-wise mixture, switch probability 0.3), language tags as special tokens. Cells: test accuracy / "
        "generated tokens per correct answer (all tokens generated for the language / its correct answers), without "
        "(`baseline`) and with (`switch`) the decoding intervention (`LanguageSwitchLogitsProcessor`, the package's "
        "defaults: alpha 0.5, beta 2, top-k 10, after a newline). `steered` is the share of test rows whose decoding "
        "the intervention changed at least one logit of: it acts only where a language tag is among the top-k "
        "tokens at a step boundary, so a model that has not learnt to write the tags is never steered.",
        "",
        *_table(["arm", "decoding", *languages, "mean accuracy", "steered"], rows),
    ]


def _mgsm_section(summary: dict) -> list[str]:
    mgsm = summary.get("mgsm")
    if mgsm is None:
        return ["## MGSM slice", "", "Not evaluated (no MGSM file at the given path, or `--mgsm_problems 0`)."]
    intro = (
        f"The first {mgsm['problems_per_language']} MGSM problems per language, zero-shot, for the base model and "
        "each arm's first-seed run at its selected rate."
    )
    if not mgsm["reported"]:
        return [
            "## MGSM slice",
            "",
            intro + " The base model and every arm score 0 in every language, so MGSM is left out of the comparison "
            "(the issue: only where the model scores above zero).",
        ]
    shown = mgsm["reported"]
    rows = [[arm, *(fmt(scores[lang]) for lang in shown)] for arm, scores in mgsm["accuracy"].items()]
    return [
        "## MGSM slice",
        "",
        intro + f" Shown only where the base model or some arm scores above zero ({', '.join(shown)}); every other "
        "language is 0 for all.",
        "",
        *_table(["arm", *shown], rows),
    ]


# -- evidence.png -------------------------------------------------------------------------------------------------


def plot(summary: dict, path: Path) -> None:
    """Grouped bars: per language, one bar per arm (mean over seeds), whiskers spanning the seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    languages, arms = summary["languages"], summary["arms"]
    width = 0.8 / len(arms)
    figure, axes = plt.subplots(figsize=(max(8, 1.5 * len(languages)), 4.5))
    for index, (arm, entry) in enumerate(arms.items()):
        positions = [i + (index - (len(arms) - 1) / 2) * width for i in range(len(languages))]
        heights = [entry["accuracy"][lang] for lang in languages]
        seeds = list(entry["accuracy_by_seed"].values())
        whiskers = None
        if len(seeds) > 1:
            whiskers = [
                [height - min(s[lang] for s in seeds) for height, lang in zip(heights, languages)],
                [max(s[lang] for s in seeds) - height for height, lang in zip(heights, languages)],
            ]
        axes.bar(positions, heights, width, yerr=whiskers, capsize=2, label=arm)
    axes.set_xticks(range(len(languages)), languages)
    axes.set_ylabel("test accuracy")
    axes.set_ylim(0, 1)
    axes.set_title(f"{summary['model']}: held-out {summary['world']} problems, mean over seeds {summary['seeds']}")
    axes.legend(ncol=4, fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
