"""The analysis module on a tiny real experiment: a healthy VAE, a collapsing GAN and a diverging
GAN trained by Ray Tune on Fashion-MNIST, read while running, before any report, and at the end."""

import base64
import io
import json
import re
import shutil
import subprocess
import sys
import threading
import time

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import ray
from ray import tune

from models.evaluation import Evaluator
from tests.conftest import REPO
from tuner.analysis import load_history, load_trials, write_report
from tuner.objective import CollapseStopper
from tuner.searchers import FixedConfigs
from tuner.spec import SPEC_FILE
from tuner.trainable import TrialSettings, train_trial

pytestmark = pytest.mark.slow
ANALYSIS = [sys.executable, "-m", "tuner.analysis"]
# Issue 20 item 0: the healthy VAE at lr 1e-3, beta 1 was flagged at its last evaluation here (coverage
# 7/10 < 8/10; diversity 0.515 vs 0.5). A 1-CPU trial repeats bit for bit on one machine; its verdict
# changed between machines (other rounding, other thread counts) because it rested on chance: a VAE
# this small never draws sandals, so coverage needs 8 of its other 9 classes, and the 8th best sits at
# 0.56-0.71 of its real share (seeds 0-3) against coverage's cut of 0.5. From 500 samples a share is
# known to +-0.1 of that; from 5,000 to +-0.034, for about 1.5 s more per evaluation.
EVAL_SAMPLES = 5000
TRIALS = [  # (what it is meant to show, config)
    # lr 3e-3, beta 0.5: diversity 0.57-0.59 over seeds 0-3 (defaults, seed 0: 0.51-0.52); entropy, KL further in
    ("healthy", {"model": "vae", "latent_dim": 16, "batch_size": 32, "epochs": 5, "lr": 3e-3, "beta": 0.5}),
    ("collapsed", {"model": "gan", "loss": "hinge", "width": 16, "batch_size": 64, "epochs": 2}),
    ("diverged", {"model": "gan", "loss": "bce", "lr_g": 1e3, "lr_d": 1e3, "width": 16, "batch_size": 64,
                  "epochs": 2}),
]


# What this experiment ran with, as tuner.build would record it in search-spec.json; only the fields
# that apply (it has no ASHA: the stopper alone, and each trial its own epochs).
RUN_SETTINGS = {"space": "configs", "model": "both", "datasets": ["fashion_mnist"], "limit": 10000,
                "eval_samples": EVAL_SAMPLES, "collapse_patience": 2, "collapse_warmup": 4, "seed": 0}


def wait_for(condition, fit: threading.Thread, timeout=300.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert fit.is_alive(), "the experiment ended before the condition held"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory, fashion_train, data_dir):
    """Runs the experiment once; copies of it taken before the first report and while running."""
    root = tmp_path_factory.mktemp("analysis")
    datasets = {"fashion_mnist": (fashion_train.subset(10000, seed=0),
                                  Evaluator.for_dataset("fashion_mnist", data_dir, n_samples=EVAL_SAMPLES))}
    # a young VAE draws few classes: the warm-up lets it reach epoch 5 instead of being stopped
    settings = TrialSettings(eval_samples=EVAL_SAMPLES, collapse_patience=2, collapse_warmup=4)
    points = [{**config, "dataset": "fashion_mnist", "seed": 0} for _, config in TRIALS]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(train_trial, datasets=datasets, settings=settings), {"cpu": 1}),
        tune_config=tune.TuneConfig(metric="objective", mode="min", num_samples=len(points),
                                    search_alg=FixedConfigs(points)),
        run_config=tune.RunConfig(storage_path=str(root), name="exp", stop=CollapseStopper(), verbose=0))
    path = root / "exp"
    fit = threading.Thread(target=tuner.fit)
    fit.start()
    try:
        wait_for(lambda: any(path.glob("experiment_state-*.json")), fit)
        shutil.copytree(path, root / "before_any_report")
        wait_for(lambda: any(p.stat().st_size for p in path.glob("*/result.json")), fit)
        running = load_trials(path)
    finally:
        fit.join()
        ray.shutdown()
    (path / SPEC_FILE).write_text(json.dumps(RUN_SETTINGS))
    return {"path": path, "before_any_report": root / "before_any_report", "running": running}


@pytest.fixture(scope="module")
def trials(experiment):
    return load_trials(experiment["path"])


@pytest.fixture(scope="module")
def report(experiment, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    done = subprocess.run([*ANALYSIS, str(experiment["path"]), "--out", str(out)], capture_output=True, text=True,
                          timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def by_role(trials: pd.DataFrame) -> dict:
    roles = {}
    for role, config in TRIALS:
        match = trials
        for key, value in config.items():
            match = match[match[key] == value]
        assert len(match) == 1, role
        roles[role] = match.iloc[0]
    return roles


def test_trials_frame_has_one_ranked_row_per_trial(trials):
    assert len(trials) == len(TRIALS)
    for column in ("trial_id", "model", "loss", "z_dim", "latent_dim", "lr_g", "best_fid", "final_fid", "best_kid",
                   "epoch_of_best_fid", "fid_floor", "d_loss_spread", "g_loss_spread", "max_loss_jump",
                   "collapsed_fraction", "end_reason", "epochs_run", "wall_time_s", "cpus", "gpus", "rank",
                   "stability_rank", "health"):
        assert column in trials, column
    assert trials["rank"].tolist() == [1, 2, 3]
    assert sorted(trials["stability_rank"]) == [1, 2, 3]
    assert (trials["cpus"] == 1).all() and (trials["gpus"] == 0).all()


def test_history_has_one_row_per_report(experiment, trials):
    history = load_history(experiment["path"])
    assert len(history) == trials["reports"].sum()
    for _, trial in trials.iterrows():
        rows = history[history["trial_id"] == trial["trial_id"]]
        assert rows["training_iteration"].tolist() == list(range(1, trial["reports"] + 1))
        assert rows["fid"].min() == pytest.approx(trial["best_fid"])
    assert {"epoch", "fid", "kid", "objective", "collapsed", "d_loss", "loss", "recon", "kl"} <= set(history)


def test_end_reasons_and_health_say_what_happened(trials):
    roles = by_role(trials)
    assert roles["healthy"]["end_reason"] == "completed" and roles["healthy"]["health"] == "healthy"
    assert roles["healthy"]["epochs_run"] == 5
    # flagged at its last evaluation, epoch 2, inside the 4-epoch warm-up: too young to call collapsed
    assert roles["collapsed"]["health"] == "immature" and roles["collapsed"]["collapsed_at_end"]
    assert roles["collapsed"]["collapsed_fraction"] > 0
    assert roles["diverged"]["end_reason"] == "diverged" and roles["diverged"]["health"] == "diverged"
    assert roles["diverged"]["reports"] == 1  # the stopper ended it at its first report


def test_the_healthy_trial_is_healthy_by_a_clear_margin(experiment, trials):
    """The healthy VAE's last evaluation sits well inside every threshold of the detector, so neither
    another draw nor another machine's rounding can flip its verdict. Coverage is a count of classes
    and this VAE has no class to spare (see EVAL_SAMPLES), so its margin lies in the sample size."""
    from models.evaluation import collapse
    healthy = by_role(trials)["healthy"]
    history = load_history(experiment["path"])
    last = history[history["trial_id"] == healthy["trial_id"]].iloc[-1]
    signals = last[["coverage", "entropy", "kl_to_labels", "diversity"]].to_dict()
    assert last["coverage"] / 10 >= collapse.COVERAGE_MIN_FRACTION, signals
    assert last["entropy"] >= collapse.ENTROPY_MIN + 0.03, signals
    assert last["kl_to_labels"] <= collapse.KL_MAX - 0.05, signals
    assert last["diversity"] >= collapse.DIVERSITY_MIN + 0.04, signals


def test_ranking_puts_collapsed_and_diverged_trials_below_the_healthy_one(trials):
    roles = by_role(trials)
    assert roles["healthy"]["rank"] < roles["collapsed"]["rank"] < roles["diverged"]["rank"]
    assert roles["healthy"]["stability_rank"] == 1


def test_html_report_is_self_contained_and_every_image_is_a_png(report):
    page = (report / "report.html").read_text()
    sources = re.findall(r'<img[^>]*src="([^"]+)"', page)
    assert len(sources) >= 5
    assert re.search(r'(href|src)="(?!data:)', page) is None  # nothing fetched from elsewhere
    for source in sources:
        assert source.startswith("data:image/png;base64,")
        image = plt.imread(io.BytesIO(base64.b64decode(source.split(",", 1)[1])), format="png")
        assert image.shape[0] > 50 and image.shape[1] > 50


def test_report_numbers_match_the_frames(report, trials):
    saved = pd.read_parquet(report / "trials.parquet")
    assert saved["trial_id"].tolist() == trials["trial_id"].tolist()
    assert pd.read_csv(report / "trials.csv")["best_fid"].round(6).tolist() == trials["best_fid"].round(6).tolist()
    markdown = (report / "report.md").read_text()
    best = trials.iloc[0]
    assert f"Best trial: {best['trial_id']} ({best['model']}), best FID {best['best_fid']:.2f}" in markdown
    for _, trial in trials.iterrows():
        row = next(line for line in markdown.splitlines() if line.startswith(f"| {trial['rank']} | {trial['trial_id']}"))
        assert f"| {trial['best_fid']:.4g} |" in row and f"| {trial['health']} |" in row
    for plot in ("fid_per_epoch.png", "gan_dynamics.png", "samples_top_trials.png", "gan_vs_vae.png"):
        assert (report / "plots" / plot).is_file(), plot


def test_reflection_answers_are_computed_from_the_trials(report, trials):
    markdown = (report / "report.md").read_text()
    diverged = by_role(trials)["diverged"]
    assert f"Trial {diverged['trial_id']} (" in markdown and "ended as diverged" in markdown
    assert "fashion_mnist: only latent dim 16 was tried" in markdown  # one VAE: says it cannot answer
    assert "importance needs at least 4" in markdown  # too few trials for Optuna's importance


def test_a_running_experiment_loads(experiment):
    """Read at the first report: the trials that started first (the VAE and the collapsing GAN) are
    mid-run, with no end word in their reports, so they must say `running`, never `completed`."""
    running = experiment["running"]
    mid_run = running[(running["reports"] > 0) & (running["epochs_run"] < running["epochs"])]
    assert len(mid_run) >= 1, running[["trial_id", "reports", "epochs_run", "end_reason"]]
    assert set(mid_run["end_reason"]) <= {"running", "diverged"} and "running" in set(mid_run["end_reason"])
    assert set(running["end_reason"]) <= {"running", "pending", "completed", "collapse", "diverged"}


def test_an_experiment_with_no_report_gets_a_report_saying_so(experiment, tmp_path):
    done = subprocess.run([*ANALYSIS, str(experiment["before_any_report"]), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "No finished reports yet" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "report.html").is_file()


def test_a_directory_that_is_not_an_experiment_is_one_line_and_exit_2(tmp_path):
    done = subprocess.run([*ANALYSIS, str(tmp_path)], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "experiment_dir" in lines[0] and "experiment_state" in lines[0], done.stderr


def test_a_torn_last_line_in_result_json_keeps_the_rows_before_it(experiment, trials, tmp_path):
    """A write cut short (e.g. a full disk) leaves result.json ending mid-line; Ray then drops every
    row of that trial, the analysis keeps the intact ones."""
    copy = tmp_path / "exp"
    shutil.copytree(experiment["path"], copy)
    healthy = by_role(trials)["healthy"]
    result = next(copy.glob(f"*{healthy['trial_id']}*")) / "result.json"
    result.write_text(result.read_text() + '{"fid": 12')
    torn = load_trials(copy).set_index("trial_id")
    assert torn.loc[healthy["trial_id"], "reports"] == healthy["reports"] == 5
    assert torn.loc[healthy["trial_id"], "best_fid"] == pytest.approx(healthy["best_fid"])


def test_importance_names_the_parameter_that_drives_the_objective():
    """Optuna's evaluator over a frame where only lr matters (loss alternates, z_dim cycles)."""
    from tuner.analysis.importance import importances
    lrs = [1e-5 * 1.5 ** i for i in range(16)]
    frame = pd.DataFrame({"model": "gan", "lr_g": lrs, "loss": ["bce", "hinge"] * 8, "z_dim": [32, 64, 128, 64] * 4,
                          "best_objective": [abs(i - 11) * 40.0 for i in range(16)]})  # best at one lr
    scores, why = importances(frame, ["loss", "z_dim", "lr_g"], "objective")
    assert why == "" and scores.idxmax() == "lr_g", scores


def markdown_table(markdown: str, heading: str) -> pd.DataFrame:
    """The first table under `heading` in report.md, as strings."""
    lines = markdown.split(f"{heading}\n", 1)[1].strip().splitlines()
    table = lines[:lines.index("")] if "" in lines else lines
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table if not line.startswith("|---")]
    return pd.DataFrame(rows[1:], columns=rows[0])


def test_report_opens_with_the_run_settings(report, data_dir):
    from models.data import load_dataset
    from models.evaluation.evaluator import net_checksum
    from models.evaluation.features import feature_net_identity, load_or_train_feature_net
    markdown = (report / "report.md").read_text()
    assert markdown.index("## Run settings") < markdown.index("## Best model")
    settings = markdown_table(markdown, "## Run settings").set_index("setting")["value"]
    assert settings["dataset(s)"] == "fashion_mnist"
    assert settings["training images"] == "fashion_mnist: 10,000 of 60,000 (--limit)"
    assert settings["epochs per trial"] == "2, 5"  # each trial's own
    assert settings["evaluation samples"] == f"{EVAL_SAMPLES:,}"
    assert settings["space"] == "configs (model: both)" and settings["trial-epochs"] == "8 spent (no budget)"
    assert settings["metric"] == "FID in gantune's FeatureNet-128 space; not comparable with Inception FIDs"
    train = load_dataset("fashion_mnist", data_dir, train=True, download=False)
    identity = feature_net_identity(train)
    net, _ = load_or_train_feature_net(train, load_dataset("fashion_mnist", data_dir, train=False, download=False))
    assert identity["weights_sha256"] == net_checksum(net)  # the net the evaluator scores with
    assert settings["feature net"] == (f"fashion_mnist: test accuracy {identity['test_accuracy']:.2%}, weights sha256 "
                                       f"{identity['weights_sha256'][:16]}, trained on images sha256 "
                                       f"{identity['data_sha256'][:16]}")
    assert "Warning: no trial is healthy" not in markdown  # the VAE is


def test_ranking_table_shows_every_searched_hyperparameter(report, trials):
    """The GANs differ in lr_g and lr_d, and only the bce one has real_label; the rest is shared."""
    table = markdown_table((report / "report.md").read_text(), "### By quality").set_index("trial_id")
    assert {"loss", "z_dim", "latent_dim", "lr_g", "lr_d", "real_label", "classes_covered"} <= set(table)
    assert not {"width", "batch_size", "epochs", "seed"} & set(table)
    for _, trial in trials.iterrows():
        row = table.loc[trial["trial_id"]]
        for key in ("lr_g", "lr_d"):
            assert row[key] == ("" if pd.isna(trial[key]) else f"{trial[key]:.4g}"), key
    covered = table.loc[by_role(trials)["healthy"]["trial_id"], "classes_covered"]
    assert re.fullmatch(r"(\d+) of 10 \((\d+)%\)", covered), covered


def test_sample_strip_shows_each_epoch_once(report, trials):
    markdown = (report / "report.md").read_text()
    caption = re.search(r"\*Fixed-noise samples of the top trials.*\((.*)\)\.\*", markdown).group(1)
    shown = dict(re.findall(r"#\d+ (\w+): epochs ([\d., ]+)", caption))
    assert len(shown) == (trials["best_fid"].notna()).sum()  # the diverged GAN has no finite FID: no strip
    for trial_id, epochs in shown.items():
        values = [float(e) for e in epochs.split(", ")]
        assert values == sorted(set(values)), (trial_id, epochs)
    roles = by_role(trials)
    assert shown[roles["collapsed"]["trial_id"]] == "1, 2"  # two reports: two grids, not epoch 2 twice
    assert shown[roles["healthy"]["trial_id"]] == "1, 3, 5"


def test_report_adds_progress_plots_per_dataset_tables_and_a_gan_interpolation(report):
    markdown = (report / "report.md").read_text()
    for plot in ("best_so_far.png", "fid_vs_collapse.png"):
        assert f"(plots/{plot})" in markdown, plot
    assert "### VAEs on fashion_mnist by latent dimension" in markdown
    assert "### GANs on fashion_mnist by loss and z_dim" in markdown
    interpolation = plt.imread(report / "plots" / "best_gan_interpolations.png", format="png")
    assert interpolation.shape[:2] == (2 + 8 * 30, 2 + 10 * 30)  # 8 rows of 10 images of 28 px, padding 2
    assert "(plots/best_gan_interpolations.png)" in markdown
    page = (report / "report.html").read_text()
    assert "each row walks a straight line in latent space" in page


def test_no_healthy_trial_is_one_warning_at_the_top_saying_what_to_try():
    from tuner.analysis.ranking import no_healthy_warning
    from tuner.analysis.settings import no_healthy_blocks
    unhealthy = pd.DataFrame({"health": ["immature", "immature", "diverged"]})
    (kind, text), = no_healthy_blocks(unhealthy)
    assert kind == "p" and text == no_healthy_warning(unhealthy)  # the search summary's sentence
    assert text.count(". ") == 0 and "--epochs" in text and "--limit" in text
    assert no_healthy_blocks(pd.DataFrame({"health": ["immature", "healthy"]})) == []


def test_pareto_front_keeps_the_trials_nothing_beats_on_both_axes():
    from tuner.analysis.progress import pareto_front
    frame = pd.DataFrame({"trial_id": list("abcde"), "best_fid": [50.0, 40.0, 60.0, 30.0, float("inf")],
                          "collapsed_fraction": [0.0, 0.5, 0.2, 1.0, 0.0]})
    assert pareto_front(frame)["trial_id"].tolist() == ["a", "b", "d"]


def test_best_so_far_counts_only_healthy_trials_in_the_order_they_finished():
    from tuner.analysis.progress import best_so_far
    trials = pd.DataFrame({"trial_id": list("abcd"), "health": ["healthy", "collapsed", "healthy", "immature"],
                           "best_fid": [80.0, 10.0, 60.0, 5.0], "epochs_run": [2.0, 1.0, 3.0, 1.0]})
    history = pd.DataFrame({"trial_id": list("dcba"), "timestamp": [40, 30, 20, 10]})
    curve = best_so_far(trials, history)
    assert curve["trial_id"].tolist() == ["a", "b", "c", "d"]
    assert curve["trial_epochs"].tolist() == [2.0, 3.0, 6.0, 7.0]
    assert curve["best_healthy_fid"].tolist() == [80.0, 80.0, 60.0, 60.0]


def test_report_renders_in_a_real_headless_browser(report):
    """Debian's chromium and chromium-driver (.ci/run installs them) through Selenium: every image
    has loaded, the console has no errors, and a screenshot of the top of the page is written."""
    webdriver = pytest.importorskip("selenium.webdriver")
    browser, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (browser and driver_path):
        pytest.skip("chromium and chromium-driver are not installed (.ci/run installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,2000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    try:
        driver.get((report / "report.html").as_uri())
        images = driver.execute_script(
            "return Array.from(document.images, i => [i.alt || i.src.slice(0, 40), i.complete, i.naturalWidth]);")
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        screenshot = report / "report-screenshot.png"
        driver.save_screenshot(str(screenshot))
    finally:
        driver.quit()
    assert len(images) >= 5, images
    assert all(complete and width > 0 for _, complete, width in images), [i for i in images if not i[2]]
    assert errors == [], errors
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
