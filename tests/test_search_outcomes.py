"""What a user sees at the end of a search, on a real local Ray with examples/tiny_gan.py: the health
labels (`immature` for a verdict inside the collapse warm-up, `collapsed` after it) and the warning
when no trial is healthy, the live progress table, relative paths (--storage-path, the analysis CLI,
load_trials, --resume), exit status 1 with the first error when a trial errors, --limit below a
batch refused before Ray starts, the console scripts, and the demo preset of `make tune` reaching a
healthy GAN on real Fashion-MNIST."""

import contextlib
import io
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from models.errors import UserInputError
from tests.conftest import read_result_json
from tuner.analysis import load_trials
from tuner.analysis.ranking import HEALTH_ORDER, health, no_healthy_warning
from tuner.objective import RUNG_METRIC
from tuner.run import main
from tuner.spec import SearchSpec, preset

pytestmark = pytest.mark.slow
TINY = ["--trainer", "examples.tiny_gan:make_trainer", "--space", "examples.tiny_gan:space", "--limit", "640",
        "--eval-samples", "200"]
BIN = Path(sys.executable).parent
SCRIPTS = {"gantune-tune": "tuner/run.py", "gantune-report": "python -m tuner.analysis",
           "gantune-train": "python -m models.train", "gantune-sample": "python -m tuner.sample"}


def make_trainer_that_raises(config: dict, data, device):
    """A --trainer whose every trial fails, as a broken plug-in does."""
    raise RuntimeError("planned failure: this trainer cannot be built")


@pytest.fixture(scope="module")
def labels_search(local_ray, data_dir, tmp_path_factory):
    """A search run from its own folder with a relative --storage-path. Every image is the same
    (ignore_noise), so every report is flagged; the warm-up is 2 epochs of 3. The first trial
    trains 3 epochs (flagged after the warm-up at epoch 3: collapsed); then the 4-trial-epoch budget
    stops the second after its first epoch (flagged inside the warm-up only: immature)."""
    work = tmp_path_factory.mktemp("work")
    stdout = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(stdout):
        patch.chdir(work)
        main([*TINY, "--fixed", "ignore_noise=true", "--num-samples", "2", "--max-concurrent", "1", "--epochs", "3",
              "--collapse-warmup", "2", "--no-early-stop", "--budget-trial-epochs", "4", "--data-dir", str(data_dir),
              "--storage-path", "runs", "--name", "labels"])
        trials = load_trials("runs/labels")  # relative, as the search's own path was
    return {"work": work, "stdout": stdout.getvalue(), "trials": trials}


def test_a_verdict_inside_the_warm_up_is_immature_and_one_after_it_collapsed(labels_search):
    trials = labels_search["trials"].set_index("epochs_run")
    assert sorted(trials.index) == [1.0, 3.0]
    young, old = trials.loc[1.0], trials.loc[3.0]
    assert young["end_reason"] == "budget" and young["health"] == "immature" and young["collapsed_at_end"]
    assert old["end_reason"] == "completed" and old["health"] == "collapsed"
    assert young["rank"] < old["rank"]  # immature ranks above collapsed
    reports = read_result_json(Path(young["path"]) / "result.json")
    assert reports["collapsed"].tolist() == [True] and reports["collapse_streak"].tolist() == [0]


def test_the_summary_warns_in_one_sentence_when_no_trial_is_healthy(labels_search):
    warnings = [line for line in labels_search["stdout"].splitlines() if "no trial is healthy" in line]
    assert warnings == ["Warning: no trial is healthy (1 immature, 1 collapsed), so even the best one's samples "
                        "are likely poor; try more epochs (--epochs) and more training images (--limit), or more "
                        "trials (--num-samples)."]


def test_the_progress_table_shows_fid_health_and_end_reason_sorted_by_the_objective(labels_search):
    """The final table: the immature trial (objective = its FID) above the collapsed one (FID +
    10,000 for its verdict after the warm-up), whichever ran first."""
    final = labels_search["stdout"].split("== finished")[-1].splitlines()
    header = next(line for line in final if "trial" in line.split())
    assert header.split() == ["trial", "status", "epoch", "fid", "health", "end_reason", RUNG_METRIC]
    ids = set(labels_search["trials"]["trial_id"])
    rows = [line.split() for line in final if line.split()[:1] and line.split()[0] in ids]
    assert [(row[1], row[4], row[5]) for row in rows] == [("TERMINATED", "immature", "stopped"),
                                                          ("TERMINATED", "collapsed", "completed")]
    by_id = labels_search["trials"].set_index("trial_id")
    assert [float(row[3]) for row in rows] == pytest.approx([by_id.loc[row[0], "final_fid"] for row in rows], rel=1e-3)


def test_the_analysis_cli_takes_a_relative_experiment_and_out(labels_search):
    done = subprocess.run([BIN / "gantune-report", "runs/labels", "--out", "my-report"], cwd=labels_search["work"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (labels_search["work"] / "my-report" / "report.html").is_file()


def tensorboard_images(folder: Path) -> list[tuple[int, str, bytes]]:
    """(step, tag, PNG) of every image summary in a trial folder's event files, read as TFRecords."""
    import struct

    from tensorboardX.proto.event_pb2 import Event
    images = []
    for path in folder.glob("events.out.tfevents.*"):
        data, offset = path.read_bytes(), 0
        while offset < len(data):
            (length,) = struct.unpack_from("<Q", data, offset)
            event = Event.FromString(data[offset + 12:offset + 12 + length])
            offset += 12 + length + 4  # length, its CRC, the record, its CRC
            images += [(event.step, value.tag, value.image.encoded_image_string) for value in event.summary.value
                       if value.HasField("image")]
    return sorted(images)


def test_tensorboard_gets_each_reports_sample_grid_beside_rays_scalars(labels_search):
    """One image per report, including the report a budget stop ended on; the image at a trial's last
    step is the grid its last checkpoint holds for that epoch."""
    import numpy as np
    from PIL import Image

    from tuner.tensorboard import IMAGE_TAG
    for _, trial in labels_search["trials"].iterrows():
        folder = labels_search["work"] / trial["path"]
        images = tensorboard_images(folder)
        assert [(step, tag) for step, tag, _ in images] == \
            [(step, IMAGE_TAG) for step in range(1, int(trial["epochs_run"]) + 1)], folder
        last = sorted(folder.glob("checkpoint_*"))[-1] / "grids" / f"epoch_{trial['epochs_run']:g}.png"
        decode = lambda png: np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))  # noqa: E731
        assert np.array_equal(decode(images[-1][2]), decode(last.read_bytes()))


def test_resume_takes_a_relative_storage_path(labels_search, monkeypatch, capsys):
    """Nothing is left to run: the budget is spent. The resumed search restores from the
    relative path, exits 0 and trains nothing more."""
    work = labels_search["work"]
    before = {p: p.read_text() for p in (work / "runs" / "labels").glob("*/result.json")}
    monkeypatch.chdir(work)
    main(["--name", "labels", "--storage-path", "runs", "--resume"])
    assert "best: fid=" in capsys.readouterr().out
    assert {p: p.read_text() for p in before} == before


def test_a_search_whose_trial_errors_exits_1_with_the_count_and_the_first_error(local_ray, data_dir, tmp_path,
                                                                                  capsys):
    with pytest.raises(SystemExit) as exited:
        main([*TINY, "--trainer", "tests.test_search_outcomes:make_trainer_that_raises", "--num-samples", "1",
              "--epochs", "1", "--max-failures", "0", "--data-dir", str(data_dir), "--storage-path", str(tmp_path),
              "--name", "errs"])
    assert exited.value.code == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("1 trial(s) errored; first, trial ") and \
        "RuntimeError: planned failure: this trainer cannot be built" in last, last


def test_the_demo_preset_finds_a_healthy_gan_from_its_start_point(local_ray, data_dir, tmp_path, capsys):
    """`make tune`'s preset through the CLI, reduced to 10k images, 6 epochs and two trials: the
    fast-hinge start point it queues first trains to a healthy best trial."""
    main(["--space", "demo", "--limit", "10000", "--epochs", "6", "--num-samples", "2", "--data-dir", str(data_dir),
          "--storage-path", str(tmp_path), "--name", "demo"])
    trials = load_trials(tmp_path / "demo")
    best = trials.iloc[0]
    assert best["health"] == "healthy", trials[["trial_id", "health", "best_fid", "end_reason"]]
    assert (best["loss"], best["lr_g"], best["width"], best["batch_size"]) == ("hinge", 1e-3, 32, 32)
    assert best["epochs_run"] == 6 and best["best_fid"] < 200
    assert "Warning: no trial is healthy" not in capsys.readouterr().out


def test_the_demo_preset_searches_gans_only():
    with pytest.raises(UserInputError, match="^model: --space demo searches gan, not 'vae'$"):
        preset("demo", model="vae")


@pytest.mark.parametrize("values,largest", [
    ({"space": "smoke"}, 64),  # the smoke space's constant batch
    ({}, 128),  # the full space searches {32, 64, 128}
    ({"space": "configs", "trial_configs": ({"loss": "hinge"}, {"batch_size": 32})}, 64),  # GANConfig's default
    ({"model": "vae", "space": "configs", "trial_configs": ({"latent_dim": 8},)}, 128),  # VAEConfig's default
])
def test_a_limit_below_a_batch_size_trials_may_use_is_refused_naming_limit(values, largest):
    with pytest.raises(UserInputError, match=f"^limit: {largest - 1} images are fewer than one batch of {largest},"):
        SearchSpec(**{**values, "limit": largest - 1})
    assert SearchSpec(**{**values, "limit": largest}).limit == largest


def test_a_pinned_batch_size_is_the_only_one_the_limit_must_hold():
    assert preset("full", fixed={"batch_size": 32}, limit=32).limit == 32


def test_ranking_places_immature_between_healthy_and_collapsed():
    base = {"best_fid": 50.0, "diverged": False, "memorized_at_end": False}
    rows = pd.DataFrame([
        {**base, "end_reason": "completed", "collapsed_at_end": True, "immature_at_end": False},
        {**base, "end_reason": "budget", "collapsed_at_end": True, "immature_at_end": True},
        {**base, "end_reason": "completed", "collapsed_at_end": False, "immature_at_end": False},
    ])
    assert [health(row) for _, row in rows.iterrows()] == ["collapsed", "immature", "healthy"]
    assert HEALTH_ORDER.index("healthy") < HEALTH_ORDER.index("immature") < HEALTH_ORDER.index("collapsed")
    assert no_healthy_warning(pd.DataFrame({"health": ["immature", "healthy"]})) is None


def test_console_scripts_are_installed_and_run_their_modules():
    """--help of each, and a bad input through the same exit_on_user_error wrapper as the module
    (one line, exit 2; without the wrapper it would be a traceback and exit 1)."""
    commands = [[BIN / script, "--help"] for script in SCRIPTS] + [[BIN / "gantune-sample", "DOES-NOT-EXIST"]]
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = list(pool.map(lambda c: subprocess.run(c, capture_output=True, text=True, timeout=600), commands))
    for (script, prog), run in zip(SCRIPTS.items(), done):
        assert run.returncode == 0 and run.stdout.startswith(f"usage: {prog}"), (script, run.stderr[-2000:])
    bad = done[-1]
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [bad.stderr.strip()], bad.stderr[-2000:]
    assert bad.stderr.startswith("error: experiment_dir: ") and "DOES-NOT-EXIST does not exist" in bad.stderr
