"""The benchmarks in bench/, each in its quick form on real data and a real local Ray: every
summary figure in their JSON must follow from the raw measurements stored beside it. Times are
never asserted (they are what the benchmarks measure, on whatever machine runs them)."""

import json
import statistics
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow
BATCH = 64  # the benchmarks' default batch size; an epoch trains the whole batches of its subset
ROUNDING = 1e-6  # the reports in the JSON are rounded to 6 decimals, the summary figures are not


def run_bench(script: str, out, data_dir, *args: str) -> dict:
    done = subprocess.run([sys.executable, str(REPO / "bench" / script), "--data-dir", str(data_dir),
                           "--out", str(out), *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert {"machine", "settings", "load_average_1_5_15", "seconds"} <= report.keys()  # bench/harness.py's Report
    assert len(report["load_average_1_5_15"]["before"]) == len(report["load_average_1_5_15"]["after"]) == 3
    return report


def healthy(reports: list[dict]) -> list[dict]:
    """Reports not flagged collapsed or diverged: their objective is their FID, with no penalty."""
    return [r for r in reports if r["objective"] == pytest.approx(r["fid"])]


def best(reports: list[dict]) -> float | None:
    return min((r["fid"] for r in reports), default=None)


def check_search_efficiency_seed(seed: dict, a: list[dict], b: list[dict]) -> None:
    """A seed's summary recomputed from its raw reports (completion order): every best is the best
    healthy report's, the best of any verdict beside it, and the flagged shares per arm."""
    healthy_a, healthy_b = healthy(a), healthy(b)
    assert seed["A_trial_epochs"] == len(a) and seed["B_trial_epochs"] == len(b)
    assert seed["A_flagged_reports"] == len(a) - len(healthy_a) and seed["B_flagged_reports"] == len(b) - len(healthy_b)
    assert seed["A_flagged_share"] == pytest.approx(1 - len(healthy_a) / len(a))
    assert seed["B_flagged_share"] == pytest.approx(1 - len(healthy_b) / len(b))
    for key, value in (("A_best_fid", best(healthy_a)), ("B_best_fid", best(healthy_b)),
                       ("A_best_fid_any_verdict", best(a)), ("B_best_fid_any_verdict", best(b)),
                       ("B_best_fid_within_A_trial_epochs", best(healthy(b[:len(a)]))),
                       ("B_best_fid_within_A_trial_epochs_any_verdict", best(b[:len(a)]))):
        assert seed[key] == (None if value is None else pytest.approx(value, abs=1e-5)), key
    assert seed["A_best_trial_loss"] == (min(healthy_a, key=lambda r: r["fid"])["loss"] if healthy_a else None)
    assert seed["B_best_trial_loss"] == (min(healthy_b, key=lambda r: r["fid"])["loss"] if healthy_b else None)
    a_best = seed["A_best_fid"]
    own = [i for i, r in enumerate(a) if r in healthy_a and r["fid"] <= a_best + ROUNDING]
    assert seed["A_trial_epochs_to_reach_own_best"] == (own[0] + 1 if own else None)
    assert seed["A_trial_epochs_in_flagged_trials"] == sum(r["health"] in ("collapsed", "diverged") for r in a)
    reached = [i for i, r in enumerate(b) if r in healthy_b and a_best is not None and r["fid"] <= a_best + ROUNDING]
    assert seed["B_reached_A_best"] == bool(reached)
    if reached:
        assert seed["B_trial_epochs_to_reach_A_best"] == reached[0] + 1
        assert seed["B_share_of_A_trial_epochs"] == pytest.approx((reached[0] + 1) / len(a))
        assert seed["B_seconds_to_reach_A_best"] == pytest.approx(b[reached[0]]["seconds_since_start"], abs=1e-5)


def test_search_efficiency_summary_follows_from_its_reports(data_dir, tmp_path):
    epochs, budget = 2, 4
    report = run_bench("search_efficiency.py", tmp_path / "se.json", data_dir, "--seeds", "0", "--budget", str(budget),
                       "--epochs", str(epochs), "--limit", "1000", "--width", "16", "--eval-samples", "200")
    a, b, seed = report["reports"]["A-seed0"], report["reports"]["B-seed0"], report["per_seed"]["0"]
    a_trials = {r["trial_id"] for r in a}
    assert len(a_trials) == seed["A_trials"] == len(report["grid_A"]) == 8
    assert sorted(r["epoch"] for r in a) == sorted(list(range(1, epochs + 1)) * 8)  # the grid runs to the end
    assert seed["B_trials"] == len({r["trial_id"] for r in b}) == budget
    check_search_efficiency_seed(seed, a, b)
    assert report["seeds_meeting_target"] == int(seed.get("B_share_of_A_trial_epochs", 1) <= 0.25)
    assert (tmp_path / "se.png").stat().st_size > 0
    spec_a, spec_b = report["specs"]["A-seed0"], report["specs"]["B-seed0"]  # what each arm ran, as SearchSpecs
    assert len(spec_a["trial_configs"]) == 8 and not spec_a["early_stop"] and spec_a["fixed"]["width"] == 16
    assert spec_b["num_samples"] == budget and spec_b["early_stop"] and spec_b["asha"] == "reranking"


STORED_SEARCH_EFFICIENCY = sorted((REPO / "bench" / "results").glob("search_efficiency*.json"))


@pytest.mark.parametrize("stored", STORED_SEARCH_EFFICIENCY, ids=lambda p: p.name)
def test_stored_search_efficiency_figures_follow_from_their_reports(stored):
    """The README's search-efficiency figures: each stored run's summary recomputed from its own reports."""
    report = json.loads(stored.read_text())
    for seed, figures in report["per_seed"].items():
        check_search_efficiency_seed(figures, report["reports"][f"A-seed{seed}"], report["reports"][f"B-seed{seed}"])
    assert report["seeds_meeting_target"] == sum(s.get("B_share_of_A_trial_epochs", 1) <= 0.25
                                                 for s in report["per_seed"].values())


def test_concurrency_counts_the_images_its_trials_trained(data_dir, tmp_path):
    limit, epochs, trials = 500, 2, 2
    report = run_bench("concurrency.py", tmp_path / "cc.json", data_dir, "--trials", str(trials), "--limit", str(limit),
                       "--epochs", str(epochs), "--width", "16", "--eval-samples", "200")
    arms = report["arms"]
    assert [arm["max_concurrent_trials"] for arm in arms] == [1, 2]
    assert [arm["observed_peak_concurrency"] for arm in arms] == [1, 2]
    for arm in arms:
        check_concurrency_arm(arm, trials, epochs, limit)
    assert [len(arm["spec"]["trial_configs"]) for arm in arms] == [trials, trials]
    assert [arm["spec"]["max_concurrent"] for arm in arms] == [1, 2] and not any(a["spec"]["early_stop"] for a in arms)
    assert arms[1]["aggregate_speedup_vs_first_arm"] == pytest.approx(
        arms[1]["aggregate_images_per_s"] / arms[0]["aggregate_images_per_s"], rel=0.01)


def check_concurrency_arm(arm: dict, trials: int, epochs: int, limit: int) -> None:
    """An arm's totals from its per-trial rows: every trial trained every whole batch of each epoch."""
    per_trial = arm["per_trial"]
    assert arm["trials_finished"] == len(per_trial) == trials and arm["trials_errored"] == 0
    assert [t["images"] for t in per_trial] == [epochs * (limit // BATCH) * BATCH] * trials
    assert arm["images_trained"] == sum(t["images"] for t in per_trial)
    assert arm["aggregate_images_per_s"] == pytest.approx(arm["images_trained"] / arm["wall_seconds"], rel=0.01)
    assert arm["trials_per_hour"] == pytest.approx(trials / arm["wall_seconds"] * 3600, rel=0.01)


def test_overheads_fractions_and_optuna_latency_are_measured(data_dir, tmp_path):
    limit, epochs, finished, asks = 500, 3, 20, 3
    report = run_bench("overheads.py", tmp_path / "oh.json", data_dir, "--trials", "1", "--epochs", str(epochs),
                       "--limit", str(limit), "--width", "16", "--eval-samples", "200", "--finished", str(finished),
                       "--asks", str(asks))
    experiment, per_report = report["experiment"], report["experiment"]["per_report"]
    assert experiment["reports_in_medians"] == epochs - 1 == per_report["overhead_s"]["n"]  # the first is left out
    raw = experiment["raw_reports"]
    assert [r["epoch"] for r in raw] == [float(e) for e in range(1, epochs + 1)]
    for r in raw:  # the trial's parts fit inside Ray's iteration time: an overhead can be neither 0 nor all of it
        assert 0 < r["train_seconds"] and 0 < r["eval_seconds"]
        assert r["train_seconds"] + r["eval_seconds"] < r["report_seconds"] < r["time_this_iter_s"]
    later = raw[1:]  # the first report is left out of the medians
    overhead = [(r["time_this_iter_s"] - r["train_seconds"] - r["eval_seconds"]) / r["train_seconds"] for r in later]
    evaluation = [r["eval_seconds"] / r["train_seconds"] for r in later]
    assert experiment["report_overhead_fraction_of_epoch"] == per_report["overhead_fraction"]["median"]
    assert per_report["overhead_fraction"]["median"] == pytest.approx(statistics.median(overhead), abs=ROUNDING)
    assert experiment["eval_fraction_of_epoch"] == per_report["eval_fraction"]["median"]
    assert per_report["eval_fraction"]["median"] == pytest.approx(statistics.median(evaluation), abs=ROUNDING)
    assert experiment["full_epoch_extrapolated"]["train_seconds"] == pytest.approx(
        per_report["train_s"]["median"] * 60000 / limit, rel=0.01)
    assert experiment["spec"]["epochs"] == epochs and experiment["spec"]["limit"] == limit
    # the trial timed its own tune.report calls (each one attached to the next report) at the threads it pinned
    assert per_report["blocked_s"]["n"] == epochs - 2
    assert experiment["torch_threads_seen_in_trial"] == [experiment["torch_threads_per_trial"]]
    optuna = report["optuna"]
    assert optuna["finished_trials"] == finished and len(optuna["fill_curve_seconds"]) == finished
    assert optuna["optuna_ask_plus_space_seconds"]["n"] == asks == optuna["ray_optunasearch_suggest_seconds"]["n"]


def test_throughput_ratio_is_the_median_of_in_round_ratios(data_dir, tmp_path):
    rounds = 3
    report = run_bench("throughput.py", tmp_path / "tp.json", data_dir, "--device", "cpu", "--rounds", str(rounds),
                       "--steps", "2", "--warmup", "1", "--num-workers", "1", "--archs", "mlp", "dcgan")
    assert report["machine"]["torch"] and report["settings"]["rounds"] == rounds
    check_throughput(report, rounds)


def check_throughput(report: dict, rounds: int) -> None:
    """Each arch's medians, in-round ratio (what the README quotes), ratio of medians and verdict,
    recomputed from the images/s of every round."""
    for arch, result in report["results"].items():
        base, ours = result["rounds_images_per_s"]["baseline"], result["rounds_images_per_s"]["device_resident"]
        assert len(base) == len(ours) == rounds and min(base + ours) > 0
        assert result["baseline_images_per_s"] == pytest.approx(statistics.median(base), abs=0.05)
        assert result["device_resident_images_per_s"] == pytest.approx(statistics.median(ours), abs=0.05)
        rounding = 0.05 / min(base) + 0.05 / min(ours)  # relative error of a ratio of values rounded to 0.1 img/s
        in_round = statistics.median(o / b for b, o in zip(base, ours))
        assert result["ratio"] == pytest.approx(in_round, rel=rounding + 1e-3), arch  # what the README quotes
        assert result["ratio_of_medians"] == pytest.approx(statistics.median(ours) / statistics.median(base),
                                                           rel=rounding + 1e-3)
        assert result["meets_target"] == (result["ratio"] >= result["target_ratio"])
