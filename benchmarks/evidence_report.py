"""The evidence benchmark's report: the records of every model → `evidence.json` (schema 2), `evidence.md`, the PNG.

Works on partial records (a run still going, or stopped): an arm appears with what has finished (its rate search so
far, the seeds done at each budget), intervals use the seeds done, and the files say `partial` and what is missing.
"""

from __future__ import annotations

import io
import json
import statistics
from pathlib import Path

from evidence_design import exponent_of, finished_search, rate_of, selection_score
from evidence_records import DESIGN_FILE, Records, base_key, final_key, with_top_ups
from evidence_stats import difference_with_interval, gain_ratio_with_interval, mean_with_interval, verdict_matrix

from slam_trainer.resume import write_atomic


# The issue's four claim differences, then slam-auto - slam-low (ours): the auto layers against layers 0-5, what the
# public SLAM code trains; their per-arm intervals overlap, so only the paired difference tells the two apart. Then
# L²'s (ours): each multilingual chain format against English chains, and the step-wise mixtures against whole chains.
COMPARISONS = (
    ("slam-auto", "full"),
    ("slam-auto", "base"),
    ("slam-auto", "slam-random"),
    ("slam-auto", "lora"),
    ("slam-auto", "slam-low"),
    ("l2-full", "en-cot"),
    ("l2-mixed", "en-cot"),
    ("l2-mixed", "l2-full"),
)
L2_ARMS = ("en-cot", "l2-full", "l2-mixed")


def _protocols(design: dict) -> list[str]:
    return ["0-shot", f"{design['few_shots']}-shot"]


def _mean(values):
    values = [value for value in values if value is not None]
    return round(statistics.mean(values), 4) if values else None


# -- evidence.json ------------------------------------------------------------------------------------------------


def summarise_model(design: dict, records: dict[str, dict]) -> dict:
    """One model's entry of `evidence.json` (see the module docstring of `bench_evidence.py` for the design)."""
    languages, others = design["languages"], design["languages"][1:]
    protocols, budgets = _protocols(design), [str(b) for b in design["budgets"]]
    records = with_top_ups(records)
    setup = records.get("setup", {})
    entry = {
        "languages": languages,
        "seeds": design["seeds"],
        "n_items": {
            "validation": dict.fromkeys(languages, design["val_problems"]),
            "test": dict.fromkeys(languages, design["test_problems"]),
        },
        "budgets": design["budgets"],
        "world": design["world"],
        "train_problems": design["train_problems"],
        "batch_size": design["batch_size"],
        "precision": design["precision"],
        "auto_layers": setup.get("layers", {}).get("auto"),
        "auto_layer_stability": setup.get("layer_stability"),
        "auto_layers_stable": setup.get("layers_stable"),
        "arms": {},
    }
    matrices: dict[tuple[str, str], tuple[list[int], object]] = {}  # (arm, budget) -> (seeds, [seeds, problems])

    base = {"protocols": {}}
    for protocol in protocols:
        val, test = records.get(base_key("val", protocol)), records.get(base_key("test", protocol))
        scores = {"validation_non_en": val["non_en"] if val else None}
        if test:
            matrix = verdict_matrix([test["verdicts"]], others)
            non_en, ci = mean_with_interval(matrix)
            scores |= {"accuracy": test["accuracy"], "non_en": non_en, "non_en_ci95": ci}
            matrices[("base", protocol)] = ([0], matrix)
        base["protocols"][protocol] = scores
    chosen = [p for p in protocols if base["protocols"][p]["validation_non_en"] is not None]
    if len(chosen) == len(protocols):
        base["chosen_protocol"] = max(
            protocols, key=lambda p: (base["protocols"][p]["validation_non_en"], -protocols.index(p))
        )
        for budget in budgets:
            if ("base", base["chosen_protocol"]) in matrices:
                matrices[("base", budget)] = matrices[("base", base["chosen_protocol"])]
    entry["arms"]["base"] = base

    full_costs = _costs(records, "full", design)
    for arm in [*design["arms"], *design["l2_arms"]]:
        entry["arms"][arm] = _arm_summary(arm, design, records, setup, full_costs, matrices)
    entry["comparisons"] = _comparisons(matrices, budgets)
    protocol_matrices = _protocol_matrices(design, records, others)
    english_matrices = _protocol_matrices(design, records, languages[:1])
    entry["comparisons_same_protocol"] = _same_protocol(design, protocol_matrices)
    entry["targets"] = _targets(entry, budgets, matrices, protocol_matrices, english_matrices, _protocols(design))
    entry["partial"] = _missing(design, records)
    return entry


def _costs(records: dict, arm: str, design: dict) -> dict:
    runs = [records[final_key(arm, seed)] for seed in design["seeds"] if final_key(arm, seed) in records]
    runs += [r for r in records.values() if r["key"].startswith(f"search/{arm}/")]
    steps = [r["step_seconds"] for r in runs if r.get("step_seconds")]
    peaks = [r["peak_rss_bytes"] for r in runs if r.get("peak_rss_bytes")]
    return {
        "step_seconds": statistics.median(steps) if steps else None,
        "peak": statistics.median(peaks) if peaks else None,
    }


def _searched_rate(ranked: dict[float, tuple[float, float]], design: dict) -> float | None:
    """The rate an arm's finished search chose from its `selection_score`s by rate (the run's own rule), or None
    while it goes on."""
    scores = {exponent_of(rate): score for rate, score in ranked.items()}
    exponent = finished_search(scores, design["start_points"], design["max_grid_points"])
    return None if exponent is None else rate_of(exponent)


def _arm_summary(arm, design, records, setup, full_costs, matrices) -> dict:
    others, protocols = design["languages"][1:], _protocols(design)
    middle = str(design["budgets"][len(design["budgets"]) // 2])
    searched = {r["rate"]: r for r in records.values() if r["key"].startswith(f"search/{arm}/")}
    ranked = {rate: selection_score(searched[rate]["evals"][f"val/{middle}/0-shot"]) for rate in sorted(searched)}
    summary = {
        "lr_grid": sorted(searched),
        "validation_by_lr": {f"{rate:g}": non_en for rate, (non_en, _) in ranked.items()},
        "validation_all_languages_by_lr": {
            f"{rate:g}": round(tie_break, 4) for rate, (_, tie_break) in ranked.items()
        },
    }
    finals = {seed: records[final_key(arm, seed)] for seed in design["seeds"] if final_key(arm, seed) in records}
    chosen = _searched_rate(ranked, design) if searched else None
    if not finals and chosen is None:
        return summary | {"status": "rate search in progress" if searched else "not started"}
    first = next(iter(finals.values())) if finals else searched[chosen]
    rate = first["rate"]
    grid = sorted(searched)
    costs = _costs(records, arm, design)
    summary |= {
        "lr": rate,
        "lr_interior": bool(grid) and grid[0] < rate < grid[-1],
        "seeds_done": sorted(finals),
        "trainable_params": first["trainable_params"],
        "trainable_share": round(first["trainable_params"] / first["total_params"], 4),
        "step_seconds": costs["step_seconds"],
        "step_time_ratio": _ratio(costs["step_seconds"], full_costs["step_seconds"]),
        "peak_memory_ratio": _ratio(costs["peak"], full_costs["peak"]),
    }
    if not finals:
        return summary | {"status": "rate chosen; seeds not finished"}
    top_ups = {str(seed): run["top_up"] for seed, run in finals.items() if "top_up" in run}
    if top_ups:
        summary["top_ups"] = top_ups
    seed_zero = records.get(final_key(arm, design["seeds"][0]))
    if seed_zero:
        summary["chosen_protocol"] = seed_zero["protocol"]
        summary["protocol_validation"] = seed_zero.get("protocol_val")
        if "intervention" in seed_zero:
            summary["intervention"] = {
                "chosen": seed_zero["intervention"],
                "validation": seed_zero.get("intervention_val"),
            }
    if first["layers"] is not None:
        summary["layers"] = (
            {str(seed): run["layers"] for seed, run in finals.items()} if arm == "slam-random" else first["layers"]
        )
    if arm == "slam-auto":
        summary["layer_stability"] = setup.get("layer_stability")
    protocol = first["protocol"]
    summary["budgets"] = {}
    for budget in (str(b) for b in design["budgets"]):
        runs = [run for run in finals.values() if f"test/{budget}/{protocol}" in run["evals"]]
        if not runs:
            continue
        tests = [run["evals"][f"test/{budget}/{protocol}"] for run in runs]
        matrix = verdict_matrix([t["verdicts"] for t in tests], others)
        matrices[(arm, budget)] = ([run["seed"] for run in runs], matrix)
        non_en, ci = mean_with_interval(matrix)
        point = {
            "accuracy": {lang: _mean([t["accuracy"][lang] for t in tests]) for lang in design["languages"]},
            "non_en": non_en,
            "non_en_ci95": ci,
            "non_en_by_seed": {str(run["seed"]): round(t["non_en"], 4) for run, t in zip(runs, tests, strict=True)},
            "english": _mean([t["accuracy"]["en"] for t in tests]),
            "train_loss": _mean([run["budgets"][budget]["train_loss"] for run in runs]),
            "tokens_seen": _mean([run["budgets"][budget]["tokens_seen"] for run in runs]),
            "tokens_per_correct": {
                lang: _mean([t["tokens_per_correct"][lang] for t in tests]) for lang in design["languages"]
            },
            "language_fidelity": {
                lang: _mean([t["language_fidelity"][lang] for t in tests]) for lang in design["languages"]
            },
        }
        for other in protocols:  # the protocol not chosen: scored on test for seed 0 at the middle budget
            scored = [run for run in runs if other != protocol and f"test/{budget}/{other}" in run["evals"]]
            if scored:
                other_tests = [run["evals"][f"test/{budget}/{other}"] for run in scored]
                point[other] = {
                    "non_en": _mean([t["non_en"] for t in other_tests]),
                    "english": _mean([t["accuracy"]["en"] for t in other_tests]),
                    "seeds": [run["seed"] for run in scored],
                }
        switch = [name for name in runs[0]["evals"] if name.startswith(f"test/{budget}/{protocol}/switch")]
        if switch and all(switch[0] in run["evals"] for run in runs):
            steered = [run["evals"][switch[0]] for run in runs]
            non_en_switch, ci_switch = mean_with_interval(verdict_matrix([t["verdicts"] for t in steered], others))
            point["switch"] = {
                "accuracy": {lang: _mean([t["accuracy"][lang] for t in steered]) for lang in design["languages"]},
                "non_en": non_en_switch,
                "non_en_ci95": ci_switch,
                "tokens_per_correct": {
                    lang: _mean([t["tokens_per_correct"][lang] for t in steered]) for lang in design["languages"]
                },
                "language_fidelity": {
                    lang: _mean([t["language_fidelity"][lang] for t in steered]) for lang in design["languages"]
                },
                "rows_steered": _mean([t.get("rows_steered") for t in steered]),
            }
        summary["budgets"][budget] = point
    return summary


def _ratio(value, reference):
    return round(value / reference, 3) if value and reference else None


def _comparisons(matrices: dict, budgets: list[str]) -> dict:
    """The claim differences per budget on the seeds both arms have finished; the headline is the last budget
    with data for both."""
    result = {}
    for first, second in COMPARISONS:
        by_budget = {}
        for budget in budgets:
            if (difference := _paired_difference(matrices, first, second, budget)) is not None:
                by_budget[budget] = difference
        if by_budget:
            last = list(by_budget)[-1]
            result[f"{first} - {second}"] = {"budget": int(last), **by_budget[last], "by_budget": by_budget}
    return result


def _paired(matrices: dict, first: str, second: str, key):
    """Both arms' `[seeds, problems]` matrices at `key` (a budget, or a budget and protocol), on the seeds both have
    finished; base, scored once, pairs with every seed of the other arm. None: nothing to pair."""
    if (first, key) not in matrices or (second, key) not in matrices:
        return None
    (seeds_a, a), (seeds_b, b) = matrices[(first, key)], matrices[(second, key)]
    if second == "base":
        return seeds_a, a, b
    common = [s for s in seeds_a if s in seeds_b]
    if not common:
        return None
    return common, a[[seeds_a.index(s) for s in common]], b[[seeds_b.index(s) for s in common]]


def _paired_difference(matrices: dict, first: str, second: str, key) -> dict | None:
    """`first - second` at `key` with its paired bootstrap interval and the seeds it uses; None: nothing to pair."""
    if (paired := _paired(matrices, first, second, key)) is None:
        return None
    seeds, a, b = paired
    diff, ci = difference_with_interval(a, b)
    return {"diff": diff, "ci95": ci, "seeds": list(seeds)}


def _protocol_matrices(design: dict, records: dict, languages: list[str]) -> dict:
    """`(arm, (budget, protocol)) -> (seeds, [seeds, problems])` over `languages` for the claim arms, wherever an arm
    is scored in a protocol at a budget (base: its one evaluation per protocol, at every budget)."""

    def scored(arm, budget, protocol) -> tuple[list[int], list[dict]]:
        if arm == "base":
            test = records.get(base_key("test", protocol))
            return ([0], [test["verdicts"]]) if test else ([], [])
        seeds, verdicts = [], []
        for seed in design["seeds"]:
            test = records.get(final_key(arm, seed), {}).get("evals", {}).get(f"test/{budget}/{protocol}")
            if test:
                seeds.append(seed)
                verdicts.append(test["verdicts"])
        return seeds, verdicts

    matrices = {}
    for arm in {arm for pair in COMPARISONS for arm in pair}:
        for budget in design["budgets"]:
            for protocol in _protocols(design):
                seeds, verdicts = scored(arm, budget, protocol)
                if seeds:
                    matrices[(arm, (str(budget), protocol))] = (seeds, verdict_matrix(verdicts, languages))
    return matrices


def _same_protocol(design: dict, matrices: dict) -> dict:
    """The claim differences with both arms in the same protocol, per budget where both arms are scored both ways
    (seed 0 at the middle budget; every seed at the last, from 2026-12-07), on the seeds both have, paired over
    problems and seeds. The headline differences use each arm's own protocol; this shows how much of one is the
    prompt's."""
    result = {}
    for first, second in COMPARISONS:
        by_budget = {}
        for budget in design["budgets"]:
            differences = {}
            for protocol in _protocols(design):
                if (difference := _paired_difference(matrices, first, second, (str(budget), protocol))) is not None:
                    differences[protocol] = difference
            if len(differences) == len(_protocols(design)):  # both ways, or the row says nothing about the prompt
                by_budget[str(budget)] = differences
        if by_budget:
            result[f"{first} - {second}"] = by_budget
    return result


def _targets(
    entry: dict, budgets: list[str], matrices: dict, protocol_matrices: dict, english_matrices: dict, protocols: list
) -> dict:
    """The issue's targets (ours, from the papers' claims), per budget where the arms have data. The gain kept and
    the English gap are also given with slam-auto and full in one protocol (the gain against the same base), where
    both are scored in it: their headline protocols can differ, and then part of the headline figure is the
    prompt's."""
    arms = entry["arms"]
    auto, full = arms.get("slam-auto", {}), arms.get("full", {})
    per_budget = {}
    for budget in budgets:
        a, f = auto.get("budgets", {}).get(budget), full.get("budgets", {}).get(budget)
        paired = _paired(matrices, "slam-auto", "full", budget)
        if paired is None or ("base", budget) not in matrices:
            continue
        kept, kept_ci = gain_ratio_with_interval(paired[1], paired[2], matrices[("base", budget)][1])
        identification = entry["comparisons"].get("slam-auto - slam-random", {}).get("by_budget", {}).get(budget)
        same_protocol = {}
        for protocol in protocols:
            if (both := _paired(protocol_matrices, "slam-auto", "full", (budget, protocol))) is not None:
                ratio, ratio_ci = gain_ratio_with_interval(both[1], both[2], matrices[("base", budget)][1])
                english = _paired(english_matrices, "slam-auto", "full", (budget, protocol))
                english_gap = round(float(english[1].mean() - english[2].mean()), 4)
                same_protocol[protocol] = {
                    "gain_kept": ratio,
                    "ci95": ratio_ci,
                    "seeds": both[0],
                    "english_gap": english_gap,
                }
        per_budget[budget] = {
            "gain_kept": kept,
            "gain_kept_ci95": kept_ci,
            "gain_kept_seeds": paired[0],
            "gain_kept_met": None if kept is None else kept >= 0.8,
            "gain_kept_same_protocol": same_protocol,
            "english_gap": round(a["english"] - f["english"], 4),
            "english_met": a["english"] >= f["english"] - 0.02,
            "identification": identification,
            "identification_met": None if identification is None else identification["ci95"][0] > 0,
        }
    return {
        "by_budget": per_budget,
        "trainable_share": auto.get("trainable_share"),
        "trainable_share_met": None if auto.get("trainable_share") is None else auto["trainable_share"] <= 0.10,
        "step_time_ratio": auto.get("step_time_ratio"),
        "step_time_met": None if auto.get("step_time_ratio") is None else auto["step_time_ratio"] <= 0.75,
    }


def _missing(design: dict, records: dict) -> list[str]:
    """What the design asks for that has no record yet (empty: the run is complete)."""
    missing = [base_key(s, p) for s in ("val", "test") for p in _protocols(design) if base_key(s, p) not in records]
    for arm in [*design["arms"], *design["l2_arms"]]:
        done = [seed for seed in design["seeds"] if final_key(arm, seed) in records]
        if len(done) < len(design["seeds"]):
            missing.append(
                f"{arm}: seeds {[s for s in design['seeds'] if s not in done]}"
                + ("" if any(k.startswith(f"search/{arm}/") for k in records) else " (rate search not started)")
            )
    return missing


def summarise(runs: dict[str, tuple[dict, dict]], *, command: str, machine: dict) -> dict:
    """`evidence.json`: schema 2, one entry per model (`runs`: model -> (design, records))."""
    models = {model: summarise_model(design, records) for model, (design, records) in runs.items()}
    wall = {
        model: round(sum(r.get("wall_seconds", 0) for r in records.values()) / 3600, 2)
        for model, (_, records) in runs.items()
    }
    return {
        "schema": 2,
        "partial": any(entry["partial"] for entry in models.values()),
        "models": models,
        "command": command,
        "machine": machine,
        "wall_hours": wall,
    }


# -- evidence.md --------------------------------------------------------------------------------------------------


def fmt(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def fmt_ci(ci) -> str:
    return "-" if not ci else f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def _diff_cell(comparison) -> str:
    if not comparison:
        return "-"
    seeds = ",".join(str(seed) for seed in comparison["seeds"])
    return f"{fmt(comparison['diff'], 3)} {fmt_ci(comparison['ci95'])} ({seeds})"


def _headline_protocol(entry: dict, arm: str) -> str:
    return entry["arms"].get(arm, {}).get("chosen_protocol") or "-"


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows] + [""]


def model_markdown(model: str, entry: dict, wall_hours: float) -> list[str]:
    languages = entry["languages"]
    lines = [f"## {model}", ""]
    if entry["partial"]:
        lines += ["**PARTIAL: the run is not finished.** Missing: " + "; ".join(entry["partial"]) + ".", ""]
    lines += [
        f"Command: `python benchmarks/bench_evidence.py --model {model}` (resumed over several invocations; the "
        "records hold every unit's step times and wall time).",
        "",
        f"{entry['train_problems']} training problems; {entry['n_items']['validation']['en']} validation and "
        f"{entry['n_items']['test']['en']} test problems per language ({', '.join(languages)}); budgets "
        f"{entry['budgets']} steps of batch {entry['batch_size']}; seeds {entry['seeds']}; {entry['precision']}. "
        f"Wall time of the records so far: {wall_hours:.1f} h.",
        "",
        f"slam-auto's layers (the default probe: the parallel training questions): {entry['auto_layers']}; bootstrap "
        f"mean Jaccard {fmt(entry['auto_layer_stability'])}, stable: {entry['auto_layers_stable']}.",
        "",
    ]
    base = entry["arms"]["base"]
    rows = []
    for protocol, scores in base["protocols"].items():
        chosen = " (chosen)" if base.get("chosen_protocol") == protocol else ""
        rows.append(
            [f"base {protocol}{chosen}", fmt(scores.get("validation_non_en"))]
            + [fmt(scores.get("accuracy", {}).get(lang)) for lang in languages]
            + [fmt(scores.get("non_en")), fmt_ci(scores.get("non_en_ci95"))]
        )
    lines += ["### Base model (test; protocol chosen on validation)", ""]
    lines += _table(["prompt", "validation non-en", *languages, "non-en", "95% CI"], rows)

    trained = [arm for arm in entry["arms"] if arm != "base"]
    for budget in (str(b) for b in entry["budgets"]):
        rows = []
        for arm in trained:
            point = entry["arms"][arm].get("budgets", {}).get(budget)
            if not point:
                continue
            info = entry["arms"][arm]
            rows.append(
                [
                    arm,
                    info["chosen_protocol"],
                    f"{info['lr']:g}",
                    *(fmt(point["accuracy"][lang]) for lang in languages),
                    fmt(point["non_en"]),
                    fmt_ci(point["non_en_ci95"]),
                    fmt(point["train_loss"], 3),
                    ", ".join(point["non_en_by_seed"]),
                ]
            )
        if rows:
            lines += [f"### Test accuracy at {budget} steps", ""]
            lines += _table(["arm", "protocol", "lr", *languages, "non-en", "95% CI", "train loss", "seeds"], rows)

    rows = [
        [
            name,
            " vs ".join(_headline_protocol(entry, arm) for arm in name.split(" - ")),
            c["budget"],
            fmt(c["diff"], 3),
            fmt_ci(c["ci95"]),
            ", ".join(str(s) for s in c["seeds"]),
            "; ".join(f"{b}: {fmt(v['diff'], 3)} {fmt_ci(v['ci95'])}" for b, v in c["by_budget"].items()),
        ]
        for name, c in entry["comparisons"].items()
    ]
    if rows:
        lines += [
            "### Differences that carry the claims (non-English mean, paired bootstrap over problems x seeds)",
            "",
        ]
        lines += _table(["difference", "protocols", "budget", "diff", "95% CI", "seeds", "by budget"], rows)
    same = entry["comparisons_same_protocol"]
    if same:
        protocols = list(dict.fromkeys(p for c in same.values() for b in c.values() for p in b))
        lines += [
            "Each arm's own protocol can differ (above). The same differences with both arms in one protocol, where "
            "both are scored both ways (cells: difference, 95% CI, seeds):",
            "",
        ]
        lines += _table(
            ["difference", "budget", *protocols],
            [
                [name, budget, *(_diff_cell(by_protocol.get(protocol)) for protocol in protocols)]
                for name, c in same.items()
                for budget, by_protocol in c.items()
            ],
        )
    top_ups = [
        f"{arm} seed {seed} ({', '.join(t['evaluations'])}; training loss at every budget "
        f"{'reproduced' if t['reproduced'] else 'NOT reproduced: ' + str(t['train_loss'])})"
        for arm in trained
        for seed, t in entry["arms"][arm].get("top_ups", {}).items()
    ]
    if top_ups:
        lines += [
            "Scored later, on the same run trained again (same rate, seed and data order) because it finished before "
            "every seed was scored both ways at the last budget: " + "; ".join(top_ups) + ".",
            "",
        ]

    rows = []
    for arm in trained:
        info = entry["arms"][arm]
        if info.get("lr_grid"):
            scores = ", ".join(
                f"{rate}: {fmt(score)} ({fmt(info['validation_all_languages_by_lr'][rate])})"
                for rate, score in info["validation_by_lr"].items()
            )
            interior = {True: "interior", False: "EDGE", None: "-"}[info.get("lr_interior")]
            rows.append(
                [
                    arm,
                    scores,
                    f"{info['lr']:g}" if "lr" in info else info.get("status", "-"),
                    interior,
                    fmt(info.get("trainable_share"), 4),
                    fmt(info.get("step_time_ratio")),
                    fmt(info.get("peak_memory_ratio")),
                ]
            )
    if rows:
        lines += [
            "### Rate searches (validation non-English mean, 0-shot, seed 0, middle budget) and costs",
            "",
            "In brackets, the mean over all languages, which breaks ties (en-cot, trained on English chains only, "
            "scores at or near 0 off English 0-shot at every rate).",
            "",
        ]
        lines += _table(
            [
                "arm",
                "validation by rate",
                "chosen",
                "bracketed",
                "trainable share",
                "step time / full",
                "peak memory / full",
            ],
            rows,
        )

    rows = []
    for arm in (a for a in trained if a in L2_ARMS):
        info = entry["arms"][arm]
        for budget, point in info.get("budgets", {}).items():
            for decoding, scores in (("baseline", point), ("switch", point.get("switch"))):
                if scores:
                    rows.append(
                        [arm, budget, decoding]
                        + [
                            f"{fmt(scores['accuracy'][lang])} / {fmt(scores['tokens_per_correct'][lang], 0)} / "
                            f"{fmt(scores['language_fidelity'][lang])}"
                            for lang in languages
                        ]
                        + [fmt(scores["non_en"]), fmt(scores.get("rows_steered"))]
                    )
    if rows:
        lines += ["### L² (cells: accuracy / generated tokens per correct answer / language fidelity)", ""]
        lines += _table(["arm", "budget", "decoding", *languages, "non-en", "rows steered"], rows)
    targets = entry["targets"]
    if targets["by_budget"]:
        rows = [
            [
                budget,
                fmt(t["gain_kept"]),
                fmt_ci(t["gain_kept_ci95"]),
                t["gain_kept_met"],
                "; ".join(
                    f"{protocol} {fmt(kept['gain_kept'])} {fmt_ci(kept['ci95'])} ({','.join(map(str, kept['seeds']))})"
                    for protocol, kept in t["gain_kept_same_protocol"].items()
                )
                or "-",
                fmt(t["english_gap"], 3),
                t["english_met"],
                "; ".join(f"{p} {fmt(kept['english_gap'], 3)}" for p, kept in t["gain_kept_same_protocol"].items())
                or "-",
                t["identification_met"],
            ]
            for budget, t in targets["by_budget"].items()
        ]
        lines += ["### Targets (ours, from the papers' claims)", ""]
        lines += _table(
            [
                "budget",
                "gain kept (>= 0.8)",
                "95% CI",
                "met",
                "gain kept, both arms in one protocol (seeds)",
                "English vs full (>= -0.02)",
                "met",
                "English vs full, both arms in one protocol",
                "slam-auto > slam-random (CI above 0)",
            ],
            rows,
        )
        lines += [
            f"Trainable share {fmt(targets['trainable_share'], 4)} (<= 0.10: {targets['trainable_share_met']}); "
            f"step time {fmt(targets['step_time_ratio'])} x full (<= 0.75: {targets['step_time_met']}).",
            "",
            "Step times and peak memory are medians over each arm's runs, which span sessions on machines that differ "
            "(each record names its `cpu`) and share two cores with other runs: a rough guide. The same-run "
            "measurement of SLAM's step against full fine-tuning's is [selective_step.md](selective_step.md).",
            "",
        ]
    return lines


def markdown(summary: dict) -> str:
    lines = ["# Evidence: SLAM and L² on real models (issue 20's design)", ""]
    if summary["partial"]:
        lines += [
            "**PARTIAL RESULTS**: the run has not finished; every number below is from the records finished so "
            "far, and intervals use the seeds done.",
            "",
        ]
    machine = summary["machine"]
    lines += [
        f"Written by: `{summary['command']}`  ",
        f"Machine: {machine['platform']}, {machine['cpu']}, {machine['cpus']} CPUs, "
        f"torch {machine['torch']}; load average "
        f"{machine['load_average']:.1f} when written (the run shares its two cores; step times are medians).  ",
        "How to read this and what changed since issue 11: [evidence_notes.md](evidence_notes.md).",
        "",
        "![non-English accuracy by budget](evidence.png)",
        "",
    ]
    for model, entry in summary["models"].items():
        lines += model_markdown(model, entry, summary["wall_hours"][model])
    return "\n".join(lines)


# -- evidence.png -------------------------------------------------------------------------------------------------


def plot(summary: dict, path: Path) -> None:
    """Non-English test accuracy against the budget, per arm (its chosen protocol), with the 95% interval as a band;
    base as a line; hollow markers: the other protocol, where it was scored (an arm's chosen protocol can be its worse
    one on test, and the same-protocol comparisons rest on these)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = summary["models"]
    figure, axes = plt.subplots(1, max(1, len(models)), figsize=(6.5 * max(1, len(models)), 4.5), squeeze=False)
    for axis, (model, entry) in zip(axes[0], models.items(), strict=False):
        base = entry["arms"]["base"]
        chosen = base["protocols"].get(base.get("chosen_protocol"), {})
        if chosen.get("non_en") is not None:
            axis.axhline(
                chosen["non_en"], color="black", linestyle="--", lw=1, label=f"base ({base['chosen_protocol']})"
            )
            axis.axhspan(*chosen["non_en_ci95"], color="black", alpha=0.08)
        other_protocols = False
        for arm, info in entry["arms"].items():
            points = info.get("budgets") if arm != "base" else None
            if not points:
                continue
            budgets = [int(b) for b in points]
            means = [points[b]["non_en"] for b in points]
            line = axis.plot(budgets, means, marker="o", label=arm)[0]
            axis.fill_between(
                budgets,
                [points[b]["non_en_ci95"][0] for b in points],
                [points[b]["non_en_ci95"][1] for b in points],
                color=line.get_color(),
                alpha=0.15,
            )
            others = [
                (int(b), scored["non_en"]) for b in points for p, scored in points[b].items() if p.endswith("-shot")
            ]
            if others:  # the protocol not chosen, where it was scored (seed 0 at the middle budget, all at the last)
                axis.scatter(*zip(*others, strict=True), marker="o", facecolors="none", edgecolors=line.get_color())
                other_protocols = True
        axis.set_xscale("log")
        axis.set_xlim(entry["budgets"][0] / 1.5, entry["budgets"][-1] * 1.5)
        axis.minorticks_off()
        axis.set_xticks(entry["budgets"], [str(b) for b in entry["budgets"]])
        axis.set_ylim(0, 1)
        axis.set_xlabel(f"training steps (batch {entry['batch_size']})")
        axis.set_ylabel("non-English test accuracy")
        axis.set_title(model + (" (PARTIAL)" if entry["partial"] else ""))
        if other_protocols:
            axis.scatter([], [], marker="o", facecolors="none", edgecolors="gray", label="other protocol")
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=7, loc="lower right")
        else:
            axis.text(0.5, 0.5, "no test scores yet", ha="center", va="center", transform=axis.transAxes)
    figure.tight_layout()
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=120)
    plt.close(figure)
    write_atomic(path, png.getvalue())


def load_runs(records_root: Path) -> dict[str, tuple[dict, dict]]:
    """Every model's design and records under `records_root` (one folder per model, each with `design.json`), the
    model with the most arms (the whole design) first."""
    runs = {}
    folders = (
        [records_root]
        if (records_root / DESIGN_FILE).exists()
        else sorted(p for p in records_root.iterdir() if p.is_dir())
    )
    for folder in folders:
        if (folder / DESIGN_FILE).exists():
            design = json.loads((folder / DESIGN_FILE).read_text(encoding="utf-8"))
            runs[design["model"]] = (design, Records(folder).records)
    order = sorted(runs, key=lambda model: (-len(runs[model][0]["arms"]) - len(runs[model][0]["l2_arms"]), model))
    return {model: runs[model] for model in order}


def write_all(records_root: Path, results: Path, *, command: str, machine: dict) -> dict:
    """evidence.json/md/png from every model's records; each file written under a temporary name and renamed, so a
    commit made while the run goes on never takes a cut file."""
    summary = summarise(load_runs(records_root), command=command, machine=machine)
    results.mkdir(parents=True, exist_ok=True)
    write_atomic(results / "evidence.json", json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    write_atomic(results / "evidence.md", markdown(summary))
    plot(summary, results / "evidence.png")
    return summary
