"""The report's side-by-side table with the labs, on a real seed-grid experiment: the labs' 18 grid
points on MNIST and Fashion-MNIST, as small as they run (1 epoch on 256 images, 200 evaluation
samples, width 8), against the figures in seed-results.json."""

import json
from pathlib import Path

import pandas as pd
import pytest
import ray

from tuner.analysis import labs, load_history, load_trials, write_report
from tuner.analysis.report import format_cell
from tuner.build import tune
from tuner.spec import preset

pytestmark = pytest.mark.slow
LAB_NAMES = {"gan": {"loss_type": "loss", "z_dimension": "z_dim"}, "vae": {"latent_dimension": "latent_dim"}}
LAB_FIGURES = {"gan": {"final_d_loss": "lab_d_loss", "final_g_loss": "lab_g_loss", "proxy_fid_score": "lab_proxy_fid"},
               "vae": {"final_total_loss": "lab_total", "final_recon_loss": "lab_recon", "final_kl_loss": "lab_kl",
                       "proxy_fid_score": "lab_proxy_fid"}}


@pytest.fixture(scope="module")
def grid(tmp_path_factory, data_dir):
    spec = preset("seed-grid", name="grid", storage_path=str(tmp_path_factory.mktemp("labs")), data_dir=str(data_dir),
                  epochs=1, limit=256, eval_samples=200, fixed={"width": 8})
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)  # our own Ray, never one already running
    try:
        tune(spec)
    finally:
        ray.shutdown()
    return spec.experiment_path


@pytest.fixture(scope="module")
def seed(data_dir):
    return json.loads((data_dir.parent / "seed-results.json").read_text())


def test_seed_results_sit_beside_the_data_directory(data_dir, monkeypatch):
    monkeypatch.setenv("GANTUNE_DATA_DIR", str(data_dir))
    assert labs.seed_results_path() == data_dir.parent / "seed-results.json"
    assert labs.seed_results_path("elsewhere.json") == Path("elsewhere.json")


def test_each_lab_run_sits_beside_its_own_trial_per_dataset(grid, seed):
    trials, history = load_trials(grid), load_history(grid)
    tables = labs.side_by_side(trials, history, seed)
    assert set(tables) == {"gan", "vae"}
    last = history.groupby("trial_id").last()
    for run in seed["runs"]:
        table = tables[run["model"]]
        match = table[table["dataset"] == run["dataset"]]
        for field, column in LAB_NAMES[run["model"]].items():
            match = match[match[column] == run[field]]
        assert len(match) == 1, run["run"]  # one trial per lab run, nothing averaged
        row = match.iloc[0]
        for field, column in LAB_FIGURES[run["model"]].items():
            assert row[column] == run[field], (run["run"], column)  # read from the file, as printed
        ours = last.loc[row["trial_id"]]
        assert trials.set_index("trial_id").loc[row["trial_id"], "dataset"] == run["dataset"]
        if run["model"] == "gan":
            assert (row["our_d_loss"], row["our_g_loss"]) == (ours["d_loss"], ours["g_loss"])
        else:
            assert (row["our_total"], row["our_recon"], row["our_kl"]) == (ours["loss"], ours["recon"], ours["kl"])
        assert (row["lab_epochs"], row["our_epochs"]) == (10, 1)


def test_report_shows_one_side_by_side_table_per_dataset(grid, seed, tmp_path):
    write_report(grid, tmp_path)
    markdown = (tmp_path / "report.md").read_text()
    section = markdown.split("## Side by side with the labs", 1)[1].split("\n## ", 1)[0]
    for run in seed["runs"]:
        model = run["model"].upper()
        own = section.split(f"### {run['dataset']}: {model}s\n", 1)[1].strip().split("\n\n", 1)[0]
        keys = [run[field] for field in LAB_NAMES[run["model"]]]
        line = next(line for line in own.splitlines() if line.startswith("| " + " | ".join(map(str, keys)) + " |"))
        for field in LAB_FIGURES[run["model"]]:
            assert f"| {format_cell(run[field])} |" in line, (run["run"], field)
    assert "The budgets differ: the lab trained 10 epochs per run, these trials 1" in section
    assert "256 images per dataset (--limit)" in section
    assert "the lab's total is its recon + KL in every run (beta 1)" in section
    assert "FID: not comparable" in section


def test_no_matching_trial_means_no_side_by_side_section(seed):
    trials = pd.DataFrame({"trial_id": ["a"], "model": ["gan"], "dataset": ["mnist"], "loss": ["wgan"],
                           "z_dim": [32], "arch": ["dcgan"], "epochs_run": [1.0], "final_fid": [9.0],
                           "best_fid": [9.0], "health": ["healthy"]})
    history = pd.DataFrame({"trial_id": ["a"], "d_loss": [0.1], "g_loss": [0.2]})
    assert labs.side_by_side(trials, history, seed) == {}
