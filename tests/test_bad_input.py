"""Bad input across the three CLIs (tuner/run.py, python -m models.train, python -m tuner.analysis)
and the config API, each case a subprocess: exit status 2, one `error:` line naming the field or
file, no traceback, and the experiment or run directory it pointed at byte-identical afterwards.
Then experiments handed over damaged or planted: a garbage line in result.json skips that line
alone, a deleted trial directory is `missing`, and pickles planted anywhere run nothing."""

import hashlib
import json
import os
import pickle
import re
import shutil
import struct
import subprocess
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import ray
import torch

from tests.conftest import REPO
from tuner.analysis import load_history, load_trials
from tuner.build import tune
from tuner.objective import EndReason
from tuner.spec import SPEC_FILE, preset

pytestmark = pytest.mark.slow
CLI = {"run": [str(REPO / "tuner" / "run.py")], "train": ["-m", "models.train"],
       "analysis": ["-m", "tuner.analysis"], "config": ["-c", (
           "import json, sys; from models.errors import exit_on_user_error; "
           "from models.config import GANConfig, VAEConfig; from tuner.spec import SearchSpec; "
           "build = {'gan': GANConfig.from_dict, 'vae': VAEConfig.from_dict, 'spec': lambda v: SearchSpec(**v)}; "
           "exit_on_user_error(lambda: build[sys.argv[1]](json.loads(sys.argv[2])))")]}
TRAIN = ["--limit", "256", "--width", "16", "--epochs", "1", "--eval-samples", "0", "--quiet"]
# (CLI, arguments, what the error line names, the directory that must not change); {name} is a path
# the `inputs` fixture made, {tmp} the case's own folder
CASES = [
    ("run", ["--name", "exp", "--storage-path", "{store}"], "--resume", "{store}/exp"),
    ("run", ["--name", "exp", "--storage-path", "{store}", "--resume", "--overwrite"], "overwrite", "{store}/exp"),
    ("run", ["--name", "exp", "--storage-path", "{broken_spec}", "--resume"], SPEC_FILE, "{broken_spec}/exp"),
    ("run", ["--gpus-per-trial", "nan"], "gpus-per-trial", None),
    ("run", ["--gpus-per-trial", "inf"], "gpus-per-trial", None),
    ("run", ["--cpus-per-trial", "inf"], "cpus-per-trial", None),
    ("run", ["--space", "smoke", "--cpus-per-trial", "64", "--storage-path", "{tmp}"], "cpus-per-trial: 64", None),
    ("run", ["--reduction-factor", "1"], "reduction-factor", None),
    ("run", ["--epochs", "2", "--grace-period", "5"], "grace-period", None),
    ("run", ["--eval-samples", "1"], "eval-samples", None),
    ("run", ["--seed", "100000000000000000000"], "seed", None),
    ("run", ["--max-concurrent", "0"], "max-concurrent", None),
    ("run", ["--limit", "1", "--storage-path", "{tmp}/runs"], "limit: 1 images are fewer than one batch", None),
    ("run", ["--fixed", "z_dim=2.5"], "z_dim", None),
    ("run", ["--fixed", "lr_g=fast"], "lr_g", None),
    ("run", ["--model", "vae", "--fixed", "regularized=no"], "regularized", None),
    ("run", ["--start-from", "{bad_point}"], "z_dim", None),
    ("run", ["--storage-path", "{file}/runs"], "storage-path", None),
    ("run", ["--name", ".."], "name", None),
    ("run", ["--dataset", "idx", "--idx-images", "{file}"], "idx-images: --dataset idx needs", None),
    ("run", ["--idx-images", "{file}", "--idx-labels", "{file}"], "idx-images: the IDX files are read only", None),
    ("run", ["--image-size", "32"], "image-size: resizes image_folder and idx", None),
    ("train", ["--out", "{run}"], "--resume", "{run}"),
    ("train", [*TRAIN, "--out", "{run}", "--resume", "--loss", "hinge"], "--loss hinge (the run has bce)", "{run}"),
    ("train", [*TRAIN, "--out", "{run}", "--resume", "--z-dim", "32"], "--z-dim 32 (the run has 64)", "{run}"),
    ("train", [*TRAIN, "--out", "{run}", "--resume", "--model", "vae"], "--model vae (the run has gan)", "{run}"),
    ("train", [*TRAIN, "--out", "{run}", "--resume", "--seed", "5"], "--seed 5 (the run has 0)", "{run}"),
    ("train", ["--out", "{run}", "--resume", "--overwrite"], "overwrite", "{run}"),
    ("train", [*TRAIN, "--out", "{run_corrupt}", "--resume"], "{run_corrupt}/checkpoint.pt", "{run_corrupt}"),
    ("train", [*TRAIN, "--out", "{run_planted}", "--resume"], "{run_planted}/checkpoint.pt", "{run_planted}"),
    ("train", ["--out", "{tmp}", "--resume"], "checkpoint", None),
    ("train", ["--out", "{file}"], "{file}", None),
    ("train", ["--out", "/proc/gantune/out"], "out", None),
    ("train", ["--seed", "100000000000000000000"], "seed", None),
    ("train", ["--device", "meta"], "device", None),
    ("train", ["--model", "vae", "--dropout", "0.3"], "dropout", None),
    ("train", ["--device", "cuda:7"], "device", None),
    ("train", ["--image-size", "100000"], "image_size", None),
    ("train", ["--eval-samples", "1"], "eval_samples", None),
    ("train", ["--data-dir", "{fm_truncated}"], "{fm_truncated}/FashionMNIST/raw/train-images-idx3-ubyte", None),
    ("train", ["--data-dir", "{fm_random}"], "{fm_random}/FashionMNIST/raw/train-images-idx3-ubyte", None),
    ("train", ["--dataset", "idx", "--idx-images", "{idx_empty}/images", "--idx-labels", "{idx_empty}/labels"],
     "{idx_empty}/images", None),
    ("train", ["--dataset", "idx", "--idx-images", "{idx_0x0}/images", "--idx-labels", "{idx_0x0}/labels"],
     "{idx_0x0}/images", None),
    ("train", ["--dataset", "image_folder", "--data-dir", "{folder_corrupt}"], "{folder_corrupt}/a/bad.png", None),
    ("train", ["--dataset", "image_folder", "--data-dir", "{folder_bomb}"], "{folder_bomb}/a/bomb.png", None),
    ("analysis", ["{tmp}/DOES-NOT-EXIST"], "{tmp}/DOES-NOT-EXIST", None),
    ("analysis", ["{file}"], "{file}", None),
    ("analysis", ["{experiment}", "--out", "/proc/gantune/report"], "out", "{experiment}"),
    ("analysis", ["{experiment}", "--out", "{file}/report"], "{file}", "{experiment}"),
    ("analysis", ["{experiment}", "--top", "0"], "top", "{experiment}"),
    ("analysis", ["{broken_spec}/exp"], SPEC_FILE, "{broken_spec}/exp"),
    ("analysis", ["{broken_state}"], "experiment_state", "{broken_state}"),
    ("config", ["gan", '{"lr_g": "fast"}'], "lr_g", None),
    ("config", ["gan", '{"z_dim": 2.5}'], "z_dim", None),
    ("config", ["gan", '{"seed": "abc"}'], "seed", None),
    ("config", ["gan", '{"spectral_norm": "no"}'], "spectral_norm", None),
    ("config", ["gan", '{"beta1": NaN}'], "beta1", None),
    ("config", ["gan", '{"loss": ["bce"]}'], "loss", None),
    ("config", ["vae", '{"regularized": "no"}'], "regularized", None),
    ("config", ["spec", '{"gpus_per_trial": Infinity}'], "gpus-per-trial", None),
    ("config", ["spec", '{"epochs": "3"}'], "epochs", None),
]


class Payload:
    """Unpickled, it creates `marker`: proof that a file's pickle ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def png(width: int, height: int) -> bytes:
    """A PNG header of this size; PIL refuses a decompression bomb from the header alone."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def idx(magic: int, dims: list[int]) -> bytes:
    return b"".join(n.to_bytes(4, "big") for n in (magic, *dims))


@pytest.fixture(scope="module")
def experiment(tmp_path_factory, data_dir) -> Path:
    """A real two-trial smoke search on a private one-CPU Ray."""
    spec = preset("smoke", name="exp", storage_path=str(tmp_path_factory.mktemp("experiment")),
                  data_dir=str(data_dir), num_samples=2, epochs=2, limit=640, eval_samples=200, max_concurrent=1)
    ray.init(num_cpus=1, num_gpus=0, include_dashboard=False, log_to_driver=False)
    try:
        assert not tune(spec).errors
    finally:
        ray.shutdown()
    return Path(spec.experiment_path)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, experiment, data_dir) -> dict:
    """Every path the cases name: copies of the experiment and of a finished models.train run, some
    damaged, and broken data."""
    root = tmp_path_factory.mktemp("inputs")
    paths = {"experiment": experiment, "file": root / "a-file", "bad_point": root / "point.json"}
    paths["file"].write_text("not a directory")
    paths["bad_point"].write_text('{"z_dim": "big"}')
    for name in ("store", "broken_spec"):
        shutil.copytree(experiment, root / name / "exp")
        paths[name] = root / name
    (root / "broken_spec" / "exp" / SPEC_FILE).write_text("{not json")
    paths["broken_state"] = shutil.copytree(experiment, root / "broken_state")
    next(paths["broken_state"].glob("experiment_state-*.json")).write_text('{"trial_data": [["{", "}"]]}')
    paths["run"] = root / "run"
    done = subprocess.run([sys.executable, "-m", "models.train", *TRAIN, "--data-dir", str(data_dir),
                           "--out", str(paths["run"])], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    for name in ("run_corrupt", "run_planted"):
        paths[name] = shutil.copytree(paths["run"], root / name)
    (paths["run_corrupt"] / "checkpoint.pt").write_bytes(b"\x00garbage" * 100)
    torch.save({"config": Payload(root / "planted-checkpoint-ran")}, paths["run_planted"] / "checkpoint.pt")
    raw = data_dir / "FashionMNIST" / "raw"
    for name, images in (("fm_truncated", (raw / "train-images-idx3-ubyte").read_bytes()[:100_000]),
                         ("fm_random", bytes(range(256)) * 40)):
        paths[name] = root / name
        (paths[name] / "FashionMNIST" / "raw").mkdir(parents=True)
        (paths[name] / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(images)
        shutil.copy(raw / "train-labels-idx1-ubyte", paths[name] / "FashionMNIST" / "raw")
    for name, dims, labels in (("idx_empty", [0, 28, 28], 0), ("idx_0x0", [10, 0, 0], 10)):
        paths[name] = root / name
        paths[name].mkdir()
        (paths[name] / "images").write_bytes(idx(0x803, dims))
        (paths[name] / "labels").write_bytes(idx(0x801, [labels]) + bytes(labels))
    for name, image in (("folder_corrupt", ("bad.png", b"not a png")),
                        ("folder_bomb", ("bomb.png", png(30000, 30000)))):
        paths[name] = root / name
        (paths[name] / "a").mkdir(parents=True)
        (paths[name] / "a" / image[0]).write_bytes(image[1])
    return paths


def snapshot(folder: Path | None) -> dict:
    """Every file under `folder` by relative path, as a hash of its bytes."""
    if folder is None:
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def filled(text: str, paths: dict) -> str:
    """`text` with each {name} of `paths` replaced by its path (JSON's braces stay as they are)."""
    return re.sub(r"\{(\w+)\}", lambda match: str(paths.get(match[1], match[0])), text)


def run_case(case, number: int, inputs: dict, root: Path, data_dir: Path):
    cli, args, named, guarded = case
    tmp = root / f"case{number}"
    tmp.mkdir()
    paths = {**inputs, "tmp": tmp}
    args, named = [filled(a, paths) for a in args], filled(named, paths)
    guarded = Path(filled(guarded, paths)) if guarded else None
    env = {**os.environ, "GANTUNE_DATA_DIR": str(data_dir), "RAY_ADDRESS": "local"}  # never a running Ray
    before = snapshot(guarded)
    done = subprocess.run([sys.executable, *CLI[cli], *args], cwd=tmp, env=env, capture_output=True, text=True,
                          timeout=300)
    return {"done": done, "named": named, "before": before, "after": snapshot(guarded), "tmp": tmp}


@pytest.fixture(scope="module")
def outcomes(inputs, tmp_path_factory, data_dir) -> list:
    """Every case run once, two at a time (most cost only the interpreter's start)."""
    root = tmp_path_factory.mktemp("cases")
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(lambda n: run_case(CASES[n], n, inputs, root, data_dir), range(len(CASES))))


def test_the_table_covers_the_three_clis_and_the_config_api():
    assert len(CASES) >= 40 and {cli for cli, *_ in CASES} == set(CLI)


@pytest.mark.parametrize("number", range(len(CASES)), ids=[f"{c[0]}-{' '.join(c[1])[:40]}" for c in CASES])
def test_bad_input_is_one_error_line_exit_2_and_changes_nothing(outcomes, number):
    outcome = outcomes[number]
    done, stderr = outcome["done"], outcome["done"].stderr
    assert done.returncode == 2, f"exit {done.returncode}: {stderr[-2000:]}"
    assert "Traceback" not in stderr, stderr[-2000:]
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    # a local Ray (started only by the cpus case) logs its start on stderr; ours is the last line
    assert len(errors) == 1 and lines[-1] == errors[0] and (len(lines) == 1 or "Ray" in stderr), stderr
    assert outcome["named"] in errors[0], errors[0]
    assert outcome["after"] == outcome["before"]


def test_a_limit_below_a_batch_is_refused_before_ray_starts_or_storage_is_made(outcomes):
    """Every trial would fail (and be retried) inside Ray; the spec refuses it first."""
    number = next(n for n, c in enumerate(CASES) if c[0] == "run" and c[1][:2] == ["--limit", "1"])
    assert outcomes[number]["done"].stderr.strip().count("\n") == 0  # no line of a Ray starting
    assert not (outcomes[number]["tmp"] / "runs").exists()


def test_analysis_of_a_missing_directory_creates_nothing(outcomes, inputs):
    number = next(n for n, c in enumerate(CASES) if c[0] == "analysis" and "DOES-NOT-EXIST" in c[1][0])
    assert not (outcomes[number]["tmp"] / "DOES-NOT-EXIST").exists()


def test_a_planted_checkpoint_runs_nothing_on_resume(outcomes, inputs):
    assert not (inputs["run"].parent / "planted-checkpoint-ran").exists()


def test_a_garbage_line_skips_that_line_only_and_the_report_says_so(experiment, tmp_path):
    copy = shutil.copytree(experiment, tmp_path / "exp")
    before = load_trials(copy).set_index("trial_id")
    trial_id = before.index[before["reports"] >= 2][0]
    result = next(copy.glob(f"train_trial_{trial_id}_*")) / "result.json"
    lines = result.read_text().splitlines(keepends=True)
    result.write_text(lines[0] + '{"epoch": 1.5, "fid": \x00garbage\n' + "".join(lines[1:]))
    after = load_trials(copy).set_index("trial_id")
    columns = ["reports", "epochs_run", "end_reason", "best_fid", "final_fid"]
    assert after.loc[trial_id, columns].tolist() == before.loc[trial_id, columns].tolist()
    assert after.loc[trial_id, "unreadable_lines"] == 1 and (after.drop(trial_id)["unreadable_lines"] == 0).all()
    history = load_history(copy)
    assert len(history[history["trial_id"] == trial_id]) == before.loc[trial_id, "reports"]
    done = subprocess.run([sys.executable, "-m", "tuner.analysis", str(copy)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Skipped lines of result.json that are not JSON" in (copy / "report" / "report.md").read_text()
    shutil.rmtree(result.parent)
    assert load_trials(copy).set_index("trial_id").loc[trial_id, "end_reason"] == EndReason.MISSING


def test_pickles_planted_in_an_experiment_run_nothing_when_it_is_analysed(experiment, tmp_path):
    """Ray's own files (tuner.pkl, the searcher state, params.pkl, error.pkl), the pickled values inside
    experiment_state-*.json and the best generator file all carry a payload that would create a file."""
    marker = tmp_path / "payload-ran"
    payload = pickle.dumps(Payload(marker))
    copy = shutil.copytree(experiment, tmp_path / "exp")
    for planted in [copy / "tuner.pkl", *copy.glob("searcher-state-*.pkl"), *copy.glob("*/params.pkl"),
                    *(trial / "error.pkl" for trial in copy.glob("train_trial_*"))]:
        planted.write_bytes(payload)
    for checkpoint in copy.glob("*/checkpoint_*"):
        torch.save({"weights": {}, "meta": Payload(marker)}, checkpoint / "best_generator.pt")
    state_file = next(copy.glob("experiment_state-*.json"))
    state = json.loads(state_file.read_text())
    pickled = {"_type": "CLOUDPICKLE_FALLBACK", "value": payload.hex()}
    for i, (trial, metadata) in enumerate(state["trial_data"]):
        trial = json.loads(trial)
        trial.update(storage=pickled, placement_group_factory=payload.hex(), results=payload.hex(),
                     config={**trial["config"], "planted": pickled})
        state["trial_data"][i] = [json.dumps(trial), metadata]
    state["runner_data"]["_stopper"] = pickled
    state_file.write_text(json.dumps(state))
    done = subprocess.run([sys.executable, "-m", "tuner.analysis", str(copy)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(load_trials(copy)) == 2 and not load_history(copy).empty
    assert "cannot be loaded as a generator" in (copy / "report" / "report.md").read_text()
    assert not marker.exists()
