"""The evidence benchmark: bad flags, the rate search's interior-or-extend rule, the records, the bootstrap intervals,
the report on partial records, and (slow) `--quick` on a tiny random model end to end, resumed."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPT = BENCHMARKS / "bench_evidence.py"
sys.path.insert(0, str(BENCHMARKS))

from bench_evidence import random_layers  # noqa: E402
from evidence_design import (  # noqa: E402
    EXPONENT_BOUNDS,
    SMOLLM2,
    choose_rate,
    exponent_of,
    finished_search,
    rate_of,
    selection_score,
    start_exponents,
)  # noqa: E402
from evidence_records import (  # noqa: E402
    Records,
    base_key,
    check_design,
    final_key,
    search_key,
    topup_key,
    with_top_ups,
)
from evidence_report import summarise_model  # noqa: E402
from evidence_stats import (  # noqa: E402
    difference_with_interval,
    gain_ratio_with_interval,
    mean_with_interval,
    verdict_matrix,
)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--languages", "es", "en"], "`--languages` must start with en"),
        (["--languages", "en", "xx"], "Unknown language code 'xx'"),
        (["--budgets", "20", "60"], "`--budgets` must be 3 or more distinct positive step counts"),
        (["--budgets", "60", "20", "180"], "ascending; got [60, 20, 180]"),
        (["--seeds", "0", "0"], "`--seeds` must be distinct"),
        (["--test_problems", "0"], "`--test_problems` must be at least 1, got 0"),
        (["--arms", "slam-auto", "lora"], "`--arms` must include full"),
    ],
)
def test_bad_flags_fail_before_anything_loads(flags, message, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(SCRIPT.parents[1])}
    command = [sys.executable, str(SCRIPT), *flags, "--work_dir", str(tmp_path / "work")]
    command += ["--records_dir", str(tmp_path / "records")]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and message in result.stderr.splitlines()[-1]
    assert not (tmp_path / "work").exists() and not (tmp_path / "records").exists()


# The rate search: scores per ladder exponent -> the next move. Ties go to the smaller rate; an edge extends the grid
# by one point while there is room (max points, exponent bounds); otherwise the best rate is chosen.
RATE_CASES = [
    ({-9: 0.1, -8: 0.5, -7: 0.2}, 7, ("chosen", -8)),  # interior: done
    ({-9: 0.1, -8: 0.2, -7: 0.5}, 7, ("extend", -6)),  # best at the top edge: one more rate above
    ({-9: 0.5, -8: 0.2, -7: 0.1}, 7, ("extend", -10)),  # best at the bottom edge: one more rate below
    ({-10: 0.3, -9: 0.5, -8: 0.2, -7: 0.1}, 7, ("chosen", -9)),  # the extension made it interior
    ({-9: 0.0, -8: 0.0, -7: 0.0}, 7, ("extend", -10)),  # all tied: the smaller rate, an edge, so extend down
    ({-9: 0.2, -8: 0.5, -7: 0.5}, 7, ("chosen", -8)),  # a tie between an interior and an edge rate: the smaller
    ({-9: 0.1, -8: 0.2, -7: 0.5}, 3, ("chosen", -7)),  # no room left: the edge is chosen (reported as such)
    ({EXPONENT_BOUNDS[1] - 1: 0.1, EXPONENT_BOUNDS[1]: 0.9}, 7, ("chosen", EXPONENT_BOUNDS[1])),  # at the bound
    ({-8: 0.4}, 7, ("extend", -9)),  # one point is both edges: extend down first
]


@pytest.mark.parametrize("scores, max_points, expected", RATE_CASES)
def test_choose_rate_extends_until_the_best_rate_is_interior(scores, max_points, expected):
    assert choose_rate(scores, max_points) == expected


@pytest.mark.parametrize(
    "scores, message", [({}, "at least one scored rate"), ({-9: 0.1, -7: 0.2}, "must be contiguous")]
)
def test_choose_rate_refuses_grids_it_cannot_extend(scores, message):
    with pytest.raises(ValueError, match=message):
        choose_rate(scores, 7)


def test_a_search_tied_on_the_headline_chooses_on_every_language():
    def validation(en, non_en=0.0):
        return {"non_en": non_en, "accuracy": {"en": en, "es": non_en, "zh": non_en}}

    # en-cot: 0 off English at every rate; its English score picks the rate, inside the grid
    scores = {e: selection_score(validation(en)) for e, en in ((-12, 0.5), (-11, 0.86), (-10, 0.7))}
    assert choose_rate(scores, 7) == ("chosen", -11)
    assert choose_rate({e: score[0] for e, score in scores.items()}, 7) == ("extend", -13)  # the headline alone
    assert selection_score(validation(0.1, non_en=0.05)) > selection_score(validation(1.0))  # the headline first


def test_the_ladder_has_the_same_points_per_decade_everywhere():
    rates = [rate_of(e) for e in range(-10, -3)]
    assert [exponent_of(rate) for rate in rates] == list(range(-10, -3))
    assert rates[:3] == [1e-5, 3.16e-5, 1e-4]
    assert all(rate_of(e + 2) == pytest.approx(10 * rate_of(e), rel=1e-2) for e in range(-12, -3))


def _search_record(arm, rate, score):
    evals = {"val/60/0-shot": {"non_en": score, "accuracy": {"en": score, "es": score}}}
    return {"key": search_key(arm, rate), "arm": arm, "rate": rate, "evals": evals}


def test_l2_searches_start_around_the_rate_full_chose(tmp_path):
    from bench_evidence import Run

    setup = {"prompt_style": "chat", "lora_rank": 1, "total_params": 1}
    records = Records(tmp_path / "records")
    run = Run(SMOLLM2, records, tmp_path, "base", {}, setup, keep=False)
    assert run.start("l2-full") is None  # full's search has not finished: it waits
    assert run.start("slam-auto") == start_exponents("slam-auto")
    for rate, score in ((3.16e-6, 0.2), (1e-5, 0.6), (3.16e-5, 0.5)):  # full's search
        records.add(_search_record("full", rate, score))
    assert finished_search({-11: 0.2, -10: 0.6, -9: 0.5}, 3, 7) == -10
    assert run.start("l2-full") == (-11, -10, -9) and run.start("en-cot") == (-11, -10, -9)
    assert run.start("slam-auto") == start_exponents("slam-auto")  # only L² arms follow full
    records.add(_search_record("l2-mixed", 3.16e-4, 0.4))  # begun elsewhere before full's search was done
    assert run.start("l2-mixed") == (-7,)  # that grid goes on (a start around 1e-5 would leave a gap)
    records.add(_search_record("en-cot", 1e-4, 0.4))  # next to the start around full's rate: no gap
    assert run.start("en-cot") == (-11, -10, -9)


def test_the_plan_lists_what_can_run_now_and_holds_back_what_waits(tmp_path):
    from bench_evidence import Run

    setup = {"prompt_style": "chat", "lora_rank": 1, "total_params": 1}
    records = Records(tmp_path / "records")

    def planned():  # as another worker's records would be found: read from disk
        return [
            task.key for task in Run(SMOLLM2, Records(tmp_path / "records"), tmp_path, "base", {}, setup, False).plan()
        ]

    first = planned()
    assert first[:4] == [base_key(s, p) for s in ("val", "test") for p in SMOLLM2.protocols]
    core_starts = [search_key(arm, rate_of(e)) for arm in SMOLLM2.arms for e in start_exponents(arm)]
    assert first[4:] == core_starts  # no final run (no rate chosen) and no L² search (full's has not chosen)
    for split in ("val", "test"):
        for protocol in SMOLLM2.protocols:
            records.add({"key": base_key(split, protocol)})
    for rate, score in ((1e-5, 0.4), (3.16e-5, 0.6), (1e-4, 0.5), (3.16e-4, 0.2)):  # full: 3.16e-5, extended once
        records.add(_search_record("full", rate, score))
        (tmp_path / "runs" / "full" / f"lr={rate:g}" / "seed=0" / "checkpoint-60").mkdir(parents=True)
    records.add(_search_record("slam-auto", 3.16e-4, 0.7))  # best at the low edge of its start so far
    done = {*(search_key("full", rate) for rate in (3.16e-5, 1e-4, 3.16e-4)), search_key("slam-auto", 3.16e-4)}
    assert planned()[: len(core_starts) - 4] == [key for key in core_starts if key not in done]
    # The runs of rates that can no longer be chosen are gone; the best one stays, for seed 0 to continue.
    assert [path.parent.name for path in (tmp_path / "runs" / "full").glob("*/seed=0")] == ["lr=3.16e-05"]
    for rate, score in ((1e-3, 0.5), (3.16e-3, 0.4)):  # slam-auto's best is at its edge: one more rate
        records.add(_search_record("slam-auto", rate, score))
    later = planned()
    assert later[0] == search_key("slam-auto", 1e-4) and final_key("full", 0) in later
    assert final_key("full", 1) not in later and final_key("slam-auto", 0) not in later  # wait for seed 0 / a rate
    l2 = [key for key in later if key.startswith(("search/en-cot", "search/l2-"))]
    assert l2 == [search_key(arm, rate_of(e)) for arm in SMOLLM2.l2_arms for e in (-10, -9, -8)]  # around full's
    assert later.index(final_key("full", 0)) < later.index(l2[0])  # core arms' final runs before L² arms'
    records.add({"key": final_key("full", 0), "evals": {"test/180/0-shot": {}, "test/180/3-shot": {}}})
    later = planned()
    assert final_key("full", 0) not in later and {final_key("full", 1), final_key("full", 2)} <= set(later)
    records.add({"key": final_key("full", 1), "evals": {"test/180/0-shot": {}}})  # lacks the other protocol
    assert topup_key("full", 1) in planned()


def test_a_search_is_finished_only_when_its_start_is_scored_and_its_best_rate_interior():
    assert finished_search({-8: 0.5}, 3, 7) is None  # start points not all scored
    assert finished_search({-8: 0.5, -6: 0.4, -7: 0.6}, 3, 7) == -7
    assert finished_search({-8: 0.5, -6: 0.4}, 2, 7) is None  # a gap: the rate between is still running
    assert finished_search({-8: 0.7, -7: 0.6, -6: 0.4}, 3, 7) is None  # best at the edge: extend
    assert finished_search({-8: 0.7, -7: 0.6, -6: 0.4}, 3, 3) == -8  # no room left: the edge is chosen


def test_slam_random_draws_other_layers_for_each_seed():
    draws = [random_layers(30, 6, seed) for seed in range(3)]
    assert len({tuple(draw) for draw in draws}) == 3 and all(draw == sorted(set(draw)) for draw in draws)
    assert random_layers(30, 6, 1) == draws[1]  # reproducible


def test_records_are_whole_files_and_a_resume_reads_them_back(tmp_path):
    records = Records(tmp_path)
    records.add({"key": "search/full/lr=0.0001", "value": 1})
    (tmp_path / "final" / "full").mkdir(parents=True)
    (tmp_path / "final" / "full" / "seed=0.json.partial").write_text('{"key": "final/full/seed=0", "val')  # cut
    again = Records(tmp_path)
    assert list(again.records) == ["search/full/lr=0.0001"] and again["search/full/lr=0.0001"]["value"] == 1
    assert (tmp_path / "search" / "full" / "lr=0.0001.json").exists()


def test_a_top_up_adds_only_what_its_final_run_lacks_and_says_whether_the_retraining_reproduced_it():
    budgets = {"20": {"train_loss": 0.5}, "180": {"train_loss": 0.01}}
    final = {"key": final_key("full", 0), "budgets": budgets, "evals": {"test/180/3-shot": "kept"}}
    top_up = {"key": topup_key("full", 0), "evals": {"test/180/3-shot": "new", "test/180/0-shot": "added"}}
    records = {final["key"]: final, top_up["key"]: {**top_up, "budgets": budgets, "wall_seconds": 60.0}}
    merged = with_top_ups(records)[final["key"]]
    assert merged["evals"] == {"test/180/3-shot": "kept", "test/180/0-shot": "added"}
    assert merged["top_up"]["evaluations"] == ["test/180/0-shot"] and merged["top_up"]["reproduced"]
    assert final["evals"] == {"test/180/3-shot": "kept"}  # the records themselves are not changed
    other_losses = {"20": {"train_loss": 0.5}, "180": {"train_loss": 0.02}}
    records[top_up["key"]] = {**top_up, "budgets": other_losses}
    assert not with_top_ups(records)[final["key"]]["top_up"]["reproduced"]


def test_records_of_another_design_are_refused(tmp_path):
    check_design(tmp_path, {"model": "m", "budgets": [20, 60, 180]})
    check_design(tmp_path, {"model": "m", "budgets": [20, 60, 180]})  # the same design resumes
    with pytest.raises(SystemExit, match=r"other settings \(budgets\)"):
        check_design(tmp_path, {"model": "m", "budgets": [10, 30, 90]})


# -- the bootstrap ------------------------------------------------------------------------------------------------


def test_verdict_matrix_averages_languages_per_seed_and_problem():
    matrix = verdict_matrix([{"es": "1100", "zh": "1000"}, {"es": "0000", "zh": "1111"}], ["es", "zh"])
    assert matrix.tolist() == [[1.0, 0.5, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5]]
    with pytest.raises(ValueError, match="different problem counts"):
        verdict_matrix([{"es": "110", "zh": "1000"}], ["es", "zh"])


@pytest.mark.parametrize(
    "rows, mean, low, high",
    [
        ([[1.0] * 50], 1.0, 1.0, 1.0),  # no variation, no width
        ([[0.0] * 50, [0.0] * 50], 0.0, 0.0, 0.0),
        ([[1.0] * 25 + [0.0] * 25] * 3, 0.5, 0.35, 0.65),  # p = 0.5 on 50 problems: +-1.96 * 0.071 around 0.5
    ],
)
def test_mean_and_interval(rows, mean, low, high):
    value, (lower, upper) = mean_with_interval(np.array(rows))
    assert value == mean and lower <= value <= upper
    assert lower == pytest.approx(low, abs=0.04) and upper == pytest.approx(high, abs=0.04)


def test_the_difference_interval_is_paired_over_problems():
    """Two arms that agree on every problem but one, which only the first gets right: the paired difference is
    0.01 and never below 0; resampling them independently would put half the mass below 0."""
    rng = np.random.default_rng(1)
    shared = (rng.random((3, 100)) < 0.5).astype(float)
    better = shared.copy()
    better[:, 0] = 1.0
    shared[:, 0] = 0.0
    diff, (low, high) = difference_with_interval(better, shared)
    assert diff == pytest.approx(0.01) and 0.0 <= low <= high <= 0.04


def test_a_one_seed_arm_pairs_with_every_seed_of_the_other():
    base = np.zeros((1, 40))
    trained = np.ones((3, 40))
    assert difference_with_interval(trained, base) == (1.0, [1.0, 1.0])


def test_the_gain_kept_is_a_paired_ratio_with_its_interval():
    rng = np.random.default_rng(0)
    base = (rng.random((1, 100)) < 0.3).astype(float)
    full = np.maximum(base, (rng.random((3, 100)) < 0.6).astype(float))  # full solves what base solves, and more
    assert gain_ratio_with_interval(full, full, base) == (1.0, [1.0, 1.0])
    assert gain_ratio_with_interval(np.repeat(base, 3, axis=0), full, base) == (0.0, [0.0, 0.0])
    half = np.where(rng.random((3, 100)) < 0.5, full, base)  # keeps about half of full's gain
    kept, (low, high) = gain_ratio_with_interval(half, full, base)
    assert low < kept < high and 0.3 < kept < 0.7
    assert gain_ratio_with_interval(full, base[[0, 0, 0]], base) == (None, None)  # no gain to keep


# -- the report on partial records --------------------------------------------------------------------------------


def _eval(rng, languages, problems, p):
    verdicts = {lang: "".join("1" if rng.random() < p else "0" for _ in range(problems)) for lang in languages}
    accuracy = {lang: v.count("1") / problems for lang, v in verdicts.items()}
    return {
        "verdicts": verdicts,
        "accuracy": accuracy,
        "non_en": float(np.mean([accuracy[lang] for lang in languages[1:]])),
        "tokens_per_correct": dict.fromkeys(languages, 20.0),
        "mean_tokens": dict.fromkeys(languages, 18.0),
        "language_fidelity": dict.fromkeys(languages, 1.0),
    }


def _records(design, arms_done):
    """Records as the benchmark writes them: the base, a finished search and final runs for `arms_done` (arm ->
    accuracy), and one search run only for slam-random."""
    rng = np.random.default_rng(0)
    languages, val, test = list(design.languages), design.val_problems, design.test_problems
    records = {"setup": {"key": "setup", "layers": {"auto": [1, 2]}, "layer_stability": 0.9, "layers_stable": True}}
    for split, count in (("val", val), ("test", test)):
        for protocol, p in (("0-shot", 0.05), ("3-shot", 0.4)):
            records[base_key(split, protocol)] = {"key": base_key(split, protocol), **_eval(rng, languages, count, p)}
    for arm, p in arms_done.items():
        for rate in (1e-4, 3.16e-4, 1e-3):
            evals = {"val/60/0-shot": _eval(rng, languages, val, p if rate == 3.16e-4 else p / 2)}
            records[search_key(arm, rate)] = {"key": search_key(arm, rate), "rate": rate, "evals": evals}
        for seed in design.seeds:
            evals = {f"test/{b}/0-shot": _eval(rng, languages, test, p * b / 180) for b in design.budgets}
            evals["test/180/3-shot"] = _eval(rng, languages, test, p)  # the other protocol at the last budget
            records[final_key(arm, seed)] = {
                "key": final_key(arm, seed),
                "rate": 3.16e-4,
                "seed": seed,
                "layers": None,
                "protocol": "0-shot",
                "protocol_val": {"0-shot": p, "3-shot": p / 2},
                "trainable_params": 10 if arm != "full" else 100,
                "total_params": 100,
                "step_seconds": 1.0 if arm != "full" else 2.0,
                "peak_rss_bytes": 1,
                "budgets": {str(b): {"steps": b, "train_loss": 1.0, "tokens_seen": 100 * b} for b in design.budgets},
                "evals": evals,
            }
    rate = 1e-3
    records[search_key("slam-random", rate)] = {
        "key": search_key("slam-random", rate),
        "rate": rate,
        "evals": {"val/60/0-shot": _eval(rng, languages, val, 0.3)},
    }
    return records


def test_the_report_compares_the_l2_chain_formats_on_the_seeds_both_have():
    """L²'s claims are differences too: each multilingual chain format against English chains, paired over problems
    and seeds, where both arms have finished runs (l2-mixed has none here)."""
    design = json.loads(json.dumps({"model": "m", **SMOLLM2.__dict__}))
    design["test_problems"], design["val_problems"] = 100, 50
    entry = summarise_model(design, _records(SMOLLM2, {"en-cot": 0.3, "l2-full": 0.8}))

    l2 = entry["comparisons"]["l2-full - en-cot"]
    assert l2["budget"] == 180 and l2["seeds"] == [0, 1, 2]
    assert 0 < l2["ci95"][0] <= l2["diff"] <= l2["ci95"][1]  # l2-full 0.8, en-cot 0.3
    assert set(l2["by_budget"]) == {"20", "60", "180"}
    assert "l2-mixed - en-cot" not in entry["comparisons"] and "l2-mixed - l2-full" not in entry["comparisons"]


def test_the_report_summarises_partial_records_and_says_what_is_missing():
    design = json.loads(json.dumps({"model": "m", **SMOLLM2.__dict__}))
    design["test_problems"], design["val_problems"] = 100, 50
    entry = summarise_model(design, _records(SMOLLM2, {"full": 0.9, "slam-auto": 0.6}))

    assert entry["arms"]["base"]["chosen_protocol"] == "3-shot"  # chosen on validation
    full, auto = entry["arms"]["full"], entry["arms"]["slam-auto"]
    assert full["lr"] == 3.16e-4 and full["lr_interior"] and full["lr_grid"] == [1e-4, 3.16e-4, 1e-3]
    assert auto["trainable_share"] == 0.1 and auto["step_time_ratio"] == 0.5
    for budget in ("20", "60", "180"):
        low, high = auto["budgets"][budget]["non_en_ci95"]
        assert low <= auto["budgets"][budget]["non_en"] <= high
    assert full["budgets"]["180"]["non_en"] > full["budgets"]["20"]["non_en"]
    comparison = entry["comparisons"]["slam-auto - full"]
    assert comparison["budget"] == 180 and comparison["ci95"][1] < 0 and comparison["seeds"] == [0, 1, 2]
    assert "slam-auto - slam-random" not in entry["comparisons"]  # slam-random has no final run yet
    same = entry["comparisons_same_protocol"]["slam-auto - full"]  # both arms in one protocol
    assert list(same) == ["180"]  # the only budget where both arms are scored both ways
    for protocol in ("0-shot", "3-shot"):
        assert same["180"][protocol]["seeds"] == [0, 1, 2]
        low, high = same["180"][protocol]["ci95"]
        assert low <= same["180"][protocol]["diff"] <= high < 0  # auto 0.6, full 0.9
    assert list(entry["comparisons_same_protocol"]["slam-auto - base"]["180"]) == ["0-shot", "3-shot"]
    kept = entry["targets"]["by_budget"]["180"]
    assert kept["gain_kept_ci95"][0] <= kept["gain_kept"] <= kept["gain_kept_ci95"][1] < 0.8  # auto 0.6, full 0.9
    assert not kept["gain_kept_met"] and kept["gain_kept_seeds"] == [0, 1, 2]
    for one in kept["gain_kept_same_protocol"].values():  # both arms in one protocol, the same base
        assert one["seeds"] == [0, 1, 2] and one["ci95"][0] <= one["gain_kept"] <= one["ci95"][1] < 0.8
        assert -0.4 < one["english_gap"] < -0.2  # English, too: auto 0.6, full 0.9
    assert list(kept["gain_kept_same_protocol"]) == ["0-shot", "3-shot"]
    assert entry["arms"]["slam-random"]["status"] == "rate search in progress"
    assert "lr" not in entry["arms"]["slam-random"]  # one rate of three scored: nothing chosen yet
    assert "slam-random: seeds [0, 1, 2]" in entry["partial"]
    assert any(item.startswith("slam-low") and "not started" in item for item in entry["partial"])


@pytest.mark.slow
def test_an_arm_whose_search_has_chosen_shows_its_rate_before_any_seed_finishes():
    design = json.loads(json.dumps({"model": "m", **SMOLLM2.__dict__}))
    records = _records(SMOLLM2, {"full": 0.9})
    rng = np.random.default_rng(1)
    for rate, p in ((1e-4, 0.3), (3.16e-4, 0.6), (1e-3, 0.4)):
        evals = {"val/60/0-shot": _eval(rng, list(SMOLLM2.languages), SMOLLM2.val_problems, p)}
        run = {"rate": rate, "evals": evals, "trainable_params": 8, "total_params": 100, "step_seconds": 1.0}
        records[search_key("lora", rate)] = {"key": search_key("lora", rate), **run}
    lora = summarise_model(design, records)["arms"]["lora"]
    assert lora["status"] == "rate chosen; seeds not finished" and lora["seeds_done"] == []
    assert lora["lr"] == 3.16e-4 and lora["lr_interior"] and lora["trainable_share"] == 0.08
    assert "budgets" not in lora


def test_quick_run_writes_the_results_files_with_the_schema_and_resumes(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(SCRIPT.parents[1]), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(SCRIPT), "--quick", "--model", "tiny:llama", "--work_dir", str(tmp_path / "work")]
    command += ["--precision", "bfloat16"]  # Gemma's: bf16 autocast training, bf16 evaluation
    # Two workers take units from one plan (one process per unit); the rerun below, with one, finds every unit done.
    workers = ["--workers", "2", "--results_dir", str(tmp_path / "results")]
    first = subprocess.run([*command, *workers], check=True, env=env, timeout=900, capture_output=True, text=True)
    assert "Worker 0/2: " in first.stdout and "Worker 1/2: " in first.stdout

    results = tmp_path / "results"
    assert (results / "evidence.png").read_bytes().startswith(b"\x89PNG")
    assert "### Differences that carry the claims" in (results / "evidence.md").read_text(encoding="utf-8")
    summary = json.loads((results / "evidence.json").read_text(encoding="utf-8"))
    assert summary["schema"] == 2 and not summary["partial"]
    typed = summary["command"].split()  # as typed, without a worker's `--worker i/n`
    assert "--workers" in typed and "--worker" not in typed
    entry = summary["models"]["tiny:llama"]
    assert entry["languages"][0] == "en" and entry["budgets"] == [1, 2, 3] and entry["seeds"] == [0, 1]
    assert entry["precision"] == "bfloat16"
    records = tmp_path / "work" / "records"
    trained = [*records.glob("search/*/*.json"), *records.glob("final/*/*.json")]
    trained_records = [json.loads(path.read_text(encoding="utf-8")) for path in trained]
    assert trained_records and all(record["bf16_autocast"] for record in trained_records)
    assert all("(bf16: " in record["cpu"] for record in trained_records)  # the run spans machines: each is named
    for path in records.glob("final/*/*.json"):  # every seed: both protocols at the last budget
        assert {"test/3/0-shot", "test/3/1-shot"} <= set(json.loads(path.read_text(encoding="utf-8"))["evals"])
    run_dirs = list((tmp_path / "work" / "runs").glob("*/*/seed=*"))  # the finals' (other rates' runs are gone)
    assert len(run_dirs) == len(list(records.glob("final/*/*.json")))
    for run_dir in run_dirs:  # the last budget's weights stay, for evaluations added later; nothing to resume
        (last,) = run_dir.glob("checkpoint-*")
        assert list(last.glob("*.safetensors")) and not (last / "optimizer.pt").exists()  # a model or an adapter
    evaluations = list((tmp_path / "work").glob("**/settings.json"))
    assert evaluations and {json.loads(path.read_text(encoding="utf-8"))["dtype"] for path in evaluations} == {
        "bfloat16"
    }
    assert list(entry["arms"]) == ["base", "full", "slam-auto", "slam-random", "lora", "l2-mixed"]
    assert set(entry["arms"]["base"]["protocols"]) == {"0-shot", "1-shot"}
    for arm, info in entry["arms"].items():
        if arm == "base":
            continue
        assert len(info["lr_grid"]) == 2 and info["lr"] in info["lr_grid"]  # the search extended once
        assert info["chosen_protocol"] in ("0-shot", "1-shot") and info["seeds_done"] == [0, 1]
        assert set(info["budgets"]) == {"1", "2", "3"}
        for point in info["budgets"].values():
            assert 0.0 <= point["non_en_ci95"][0] <= point["non_en"] <= point["non_en_ci95"][1] <= 1.0
    assert entry["arms"]["slam-random"]["layers"] == {str(seed): random_layers(8, 2, seed) for seed in (0, 1)}
    assert "switch" in entry["arms"]["l2-mixed"]["budgets"]["3"]
    assert set(entry["comparisons"]) == {
        "slam-auto - full",
        "slam-auto - base",
        "slam-auto - slam-random",
        "slam-auto - lora",
    }

    # Every unit is one file; running again resumes from them and trains nothing.
    rerun = subprocess.run(
        [*command, "--results_dir", str(tmp_path / "again")], check=True, env=env, capture_output=True, text=True
    )
    assert "s/step" not in rerun.stdout
    assert (
        json.loads((tmp_path / "again" / "evidence.json").read_text(encoding="utf-8"))["models"] == summary["models"]
    )

    # A final run that lacks the other protocol at the last budget, with its weights gone (seed 0 of three arms in
    # the SmolLM2 run): the next run trains it again from step 0 and scores only what is missing.
    final_path = records / "final" / "full" / "seed=0.json"
    final = json.loads(final_path.read_text(encoding="utf-8"))
    lacking = final["evals"].pop("test/3/1-shot")
    final_path.write_text(json.dumps(final), encoding="utf-8")
    (run_dir,) = (tmp_path / "work" / "runs" / "full").glob("*/seed=0")
    shutil.rmtree(run_dir)
    topped = subprocess.run(
        [*command, "--results_dir", str(tmp_path / "topped")], check=True, env=env, capture_output=True, text=True
    )
    assert "topup/full/seed=0: " in topped.stdout and topped.stdout.count("s/step") == 1  # nothing else trained
    top_up = json.loads((records / "topup" / "full" / "seed=0.json").read_text(encoding="utf-8"))
    assert list(top_up["evals"]) == ["test/3/1-shot"]
    assert top_up["evals"]["test/3/1-shot"]["verdicts"] == lacking["verdicts"]  # the same run, scored the same
    full = json.loads((tmp_path / "topped" / "evidence.json").read_text(encoding="utf-8"))["models"]["tiny:llama"]
    assert full["arms"]["full"]["top_ups"]["0"]["evaluations"] == ["test/3/1-shot"]
    assert full["arms"]["full"]["top_ups"]["0"]["reproduced"]  # the training loss at every budget is the same
    assert full["comparisons_same_protocol"] == entry["comparisons_same_protocol"]
    assert "Scored later" in (tmp_path / "topped" / "evidence.md").read_text(encoding="utf-8")
