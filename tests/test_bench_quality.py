"""bench/quality.py in its quick form on real data and a real local Ray: every summary figure in
its JSON must follow from the reports stored beside it, B must stay within its trial-epoch budget,
and the winners' sample grids must come from the winners' kept generators."""

import json
import subprocess
import sys

import pytest
from PIL import Image

from search_spaces.recipes import RECIPES
from tests.conftest import REPO

pytestmark = pytest.mark.slow
EPOCHS, CONCURRENCY = 1, 2


def healthy(reports: list[dict]) -> list[dict]:
    """Reports not flagged collapsed or diverged: their objective is their FID, with no penalty."""
    return [r for r in reports if r["objective"] == pytest.approx(r["fid"])]


def best(reports: list[dict]) -> float | None:
    return min((r["fid"] for r in reports), default=None)


def run_quality(data_dir, out, *flags, epochs=EPOCHS):
    return subprocess.run(
        [sys.executable, str(REPO / "bench" / "quality.py"), "--data-dir", str(data_dir), "--out", str(out),
         "--storage", str(out.parent / "runs"), "--epochs", str(epochs), "--limit", "1000", "--width", "16",
         "--eval-samples", "200", "--concurrency", str(CONCURRENCY), *flags],
        capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def quality(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("quality") / "quality.json"
    done = run_quality(data_dir, out)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, json.loads(out.read_text())


def test_summary_follows_from_the_reports(quality):
    _, report = quality
    a, b, seed = report["reports"]["A-seed0"], report["reports"]["B-seed0"], report["per_seed"]["0"]
    budget = 6 * EPOCHS
    assert seed["budget_trial_epochs"] == budget
    assert len({r["trial_id"] for r in a}) == seed["A_trials"] == len(report["lab_recipes_A"]) == 6
    assert sorted(r["epoch"] for r in a) == [EPOCHS] * 6  # every recipe runs to the end
    assert {(r["loss"], r["z_dim"]) for r in a} == {(x["loss"], x["z_dim"]) for x in report["lab_recipes_A"]}
    assert seed["A_trial_epochs"] == len(a) and seed["B_trial_epochs"] == len(b)
    # the budget stops B once its reports add up to it; only trials running then may add one more each
    assert budget <= len(b) <= budget + CONCURRENCY - 1
    healthy_a, healthy_b = healthy(a), healthy(b)
    assert seed["A_flagged_reports"] == len(a) - len(healthy_a) and seed["B_flagged_reports"] == len(b) - len(healthy_b)
    assert seed["A_best_fid_any_verdict"] == pytest.approx(min(r["fid"] for r in a), rel=1e-6)
    assert seed["B_best_fid_any_verdict"] == pytest.approx(min(r["fid"] for r in b), rel=1e-6)
    assert seed["A_best_fid"] == best(healthy_a) and seed["B_best_fid"] == best(healthy_b)
    assert seed["B_best_fid_within_budget"] == best(healthy(b[:budget]))
    if seed["A_best_fid"] is None or seed["B_best_fid"] is None:
        assert seed["B_over_A_best_fid"] is None and not seed["meets_target"]
    else:
        assert seed["B_over_A_best_fid"] == pytest.approx(seed["B_best_fid"] / seed["A_best_fid"], rel=1e-6)
        assert seed["meets_target"] == (seed["B_best_fid"] <= 0.5 * seed["A_best_fid"])
    passed = [i for i, r in enumerate(b) if r in healthy_b and seed["A_best_fid"] is not None
              and r["fid"] < seed["A_best_fid"]]
    assert seed["B_passed_A_best"] == bool(passed)
    if passed:
        assert seed["B_trial_epochs_to_pass_A_best"] == passed[0] + 1
    assert report["seeds_meeting_target"] == int(seed["meets_target"])
    for arm, reports in (("A", healthy_a or a), ("B", healthy_b or b)):  # a flagged winner only if none is healthy
        winner = min(reports, key=lambda r: r["fid"])
        assert seed[f"{arm}_winner_trial"] == winner["trial_id"]
        assert seed[f"{arm}_winner_config"]["loss"] == winner["loss"]


def test_each_arm_records_the_spec_it_ran(quality):
    _, report = quality
    a, b = report["specs"]["A-seed0"], report["specs"]["B-seed0"]
    assert a["space"] == "configs" and not a["early_stop"] and a["budget_trial_epochs"] is None
    assert b["space"] == "full" and b["early_stop"] and b["budget_trial_epochs"] == 6 * EPOCHS
    assert b["fixed"] == {"arch": "dcgan", "width": 16}
    assert b["start_from"] == [RECIPES["sngan-ema"].config]  # the default recipe TPE tries first
    assert all(r["width"] == 16 for r in a["trial_configs"])
    for spec in (a, b):
        assert spec["limit"] == 1000 and spec["epochs"] == EPOCHS and spec["eval_samples"] == 200


def test_winner_grids_are_drawn_from_the_kept_generators(quality):
    out, report = quality
    for arm in ("A", "B"):
        grid = out.parent / report["per_seed"]["0"][f"{arm}_winner_samples"]
        with Image.open(grid) as image:  # 10 x 10 images of 28 px, 2 px padding
            assert image.size == (10 * 30 + 2, 10 * 30 + 2)


def test_arm_a_reused_from_an_earlier_file_is_its_reports_and_grid(quality, data_dir, tmp_path):
    """--reuse-a takes A's reports and winner grid as they were and runs B afresh; the summary is
    recomputed from them. Other settings than the file's are refused before anything runs."""
    first, report = quality
    out = first.parent / "reused.json"
    done = run_quality(data_dir, out, "--reuse-a", str(first), "--storage", str(tmp_path / "runs"))
    assert done.returncode == 0, done.stderr[-3000:]
    reused = json.loads(out.read_text())
    assert reused["reports"]["A-seed0"] == report["reports"]["A-seed0"]
    assert reused["reports"]["B-seed0"] != report["reports"]["B-seed0"]  # B ran again, in its own storage
    seed = reused["per_seed"]["0"]
    assert seed["A_reused_from"] == first.name and seed["A_winner_samples"] == report["per_seed"]["0"]["A_winner_samples"]
    assert seed["A_best_fid"] == report["per_seed"]["0"]["A_best_fid"]
    assert not (tmp_path / "runs" / "A-seed0").exists()  # A was not trained again

    refused = run_quality(data_dir, tmp_path / "never.json", "--reuse-a", str(first), epochs=EPOCHS + 1)
    assert refused.returncode == 2 and not (tmp_path / "never.json").exists()
    assert refused.stderr.strip().splitlines()[-1].startswith("--reuse-a:") and "epochs" in refused.stderr


STORED_RUNS = sorted(p for p in (REPO / "bench" / "results").glob("quality*.json") if "retrained" not in p.name)


@pytest.mark.parametrize("stored", STORED_RUNS, ids=lambda p: p.name)
def test_stored_full_scale_figures_follow_from_their_reports(stored):
    """The README's quality figures: each stored run's best FIDs, their ratio and the target verdict
    recomputed from its own reports, the bests counting healthy reports only."""
    report = json.loads(stored.read_text())
    for seed, figures in report["per_seed"].items():
        a, b = report["reports"][f"A-seed{seed}"], report["reports"][f"B-seed{seed}"]
        assert len(a) == figures["A_trial_epochs"] and len(b) == figures["B_trial_epochs"]
        assert figures["A_best_fid"] == pytest.approx(best(healthy(a)), abs=1e-5)
        assert figures["B_best_fid"] == pytest.approx(best(healthy(b)), abs=1e-5)
        assert figures["B_over_A_best_fid"] == pytest.approx(best(healthy(b)) / best(healthy(a)), rel=1e-5)
        assert figures["meets_target"] == (best(healthy(b)) <= 0.5 * best(healthy(a)))
        passed = next((i for i, r in enumerate(b) if r in healthy(b) and r["fid"] < best(healthy(a))), None)
        assert figures["B_passed_A_best"] == (passed is not None)
        assert figures.get("B_trial_epochs_to_pass_A_best") == (None if passed is None else passed + 1)
