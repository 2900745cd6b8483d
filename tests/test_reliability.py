"""Reliability on a real multi-node Ray cluster on one machine (tests/cluster.py): a head with no
trial resources and worker nodes with a logical GPU each, driven by tuner/run.py through
RAY_ADDRESS, with results on a storage path every node sees. A worker node is lost mid-search,
the driver is SIGKILLed mid-search, the storage path stops taking writes mid-run, and a worker
joins without the project installed; nothing recorded may be lost or counted twice."""

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.cluster import Cluster
from tests.conftest import REPO, read_result_json
from tuner.analysis import load_history, load_trials
from tuner.resume import named_checkpoint, unfinished_trials

pytestmark = pytest.mark.slow

RUN = str(REPO / "tuner" / "run.py")
FINISHED = ("completed", "collapse", "diverged")  # end reasons a trial reports at its last epoch
EPOCHS = 10  # small epochs (320 images = 5 steps each), so a trial can be caught mid-run
# --max-concurrent 4 also lets Tune start 4 trials at once (with a searcher it otherwise starts
# them one after the other, each waiting for the previous one's actor to come up).
SEARCH = ["--space", "smoke", "--model", "gan", "--limit", "320", "--eval-samples", "200", "--no-early-stop",
          "--gpus-per-trial", "0.5", "--cpus-per-trial", "0.5", "--epochs", str(EPOCHS), "--max-concurrent", "4"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Head (0 CPUs, 0 GPUs) + two workers (1 CPU, 1 logical GPU each) on 127.0.0.1/.2/.3.

    The workers see no dataset directory and no feature-net cache: their GANTUNE_DATA_DIR and
    GANTUNE_CACHE_DIR name directories that do not exist, so a trial that ran there can only have
    had its data and feature network from the object store (tune.with_parameters)."""
    root = tmp_path_factory.mktemp("cluster")
    cluster = Cluster(root)
    cluster.no_files = {"GANTUNE_DATA_DIR": str(root / "no-datasets-on-workers"),
                        "GANTUNE_CACHE_DIR": str(root / "no-cache-on-workers")}
    try:
        cluster.start_head()
        for _ in range(2):
            add_worker(cluster)
        yield cluster
    finally:
        cluster.shutdown()


def add_worker(cluster, extra_env=None):
    return cluster.add_worker(f"worker{len(cluster.workers) + 1}", num_cpus=1, num_gpus=1,
                              extra_env={**cluster.no_files, **(extra_env or {})})


def healthy_workers(cluster, count=2):
    """Exactly `count` healthy workers alive (a lost one is replaced by a fresh node)."""
    alive = [w for w in cluster.workers.values() if w.alive() and not w.env.get("PYTHONPATH")]
    while len(alive) < count:
        alive.append(add_worker(cluster))
    return alive[:count]


def driver_env(data_dir):
    return {"GANTUNE_DATA_DIR": str(data_dir), "GANTUNE_CACHE_DIR": os.environ.get("GANTUNE_CACHE_DIR", "")}


def run_search(cluster, data_dir, log, *args):
    return cluster.driver([RUN, *SEARCH, *args], env=driver_env(data_dir), stdout=log.open("w"),
                          stderr=subprocess.STDOUT, text=True)


def trial_dirs(experiment: Path) -> list[Path]:
    return sorted(p for p in experiment.glob("train_trial_*") if p.is_dir()) if experiment.is_dir() else []


def last_checkpoint(trial: Path) -> int:
    """Index of the newest checkpoint the trial wrote to storage (-1: none yet)."""
    indices = [int(p.name.split("_")[1]) for p in trial.glob("checkpoint_*") if (p / "trainer.pt").is_file()]
    return max(indices, default=-1)


def wait_for(condition, timeout, what, process=None):
    deadline = time.time() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the driver exited (rc {process.returncode}) before {what}")
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


def recorded_reports(trial: Path) -> int:
    """Complete lines in the trial's result.json so far. The driver appends one per report it has
    processed, which can lag the checkpoints the trial itself has already written to storage."""
    path = trial / "result.json"
    return path.read_text().count("\n") if path.is_file() else 0


def raw_results(trial: Path) -> pd.DataFrame:
    """Ray's own record of a trial: every line of its result.json, duplicates included."""
    return read_result_json(trial / "result.json")


def attempts(rows: pd.DataFrame) -> list[pd.DataFrame]:
    """The record split into attempts: Ray restarts `iterations_since_restore` at 1 in each."""
    return [part for _, part in rows.groupby((rows["iterations_since_restore"] == 1).cumsum())]


def check_record(trial: Path, missing: range = range(0)) -> list[pd.DataFrame]:
    """Ray's raw record of one trial: every epoch there but some of `missing` (reports --resume said
    had not reached storage), each attempt after the first resumed from a checkpoint (its count
    goes on, it never restarts at epoch 1). Ray logs a result before it registers the checkpoint
    that came with it, so an attempt cut in between is resumed from the checkpoint before and
    replays that epoch: the replay must be the same report (same step, same losses and FID: the
    checkpoint holds every RNG stream). Returns the attempts."""
    rows = raw_results(trial)
    assert (rows["epoch"] == rows["training_iteration"]).all(), trial.name  # one report per epoch
    absent = set(range(1, EPOCHS + 1)) - set(rows["training_iteration"])
    assert absent <= set(missing) and set(rows["training_iteration"]) <= set(range(1, EPOCHS + 1)), trial.name
    parts = attempts(rows)
    for part in parts:
        assert part["training_iteration"].diff().dropna().eq(1).all(), trial.name
        assert part["pid"].nunique() == 1 and part["node_ip"].nunique() == 1, trial.name
    for before, after in zip(parts, parts[1:]):
        resumed, last = after["training_iteration"].iloc[0], before["training_iteration"].iloc[-1]
        if missing:  # resumed after the missing reports, whichever of them the record holds
            assert last >= missing.start - 1 and resumed == missing.stop, trial.name
        else:
            assert 2 <= resumed <= last + 1, trial.name  # resumed, no gap
        replayed = before[before["training_iteration"] >= resumed]
        again = after.set_index("training_iteration").loc[replayed["training_iteration"]]
        for column in ("step", "d_loss", "g_loss", "fid"):
            assert again[column].tolist() == pytest.approx(replayed[column].tolist(), rel=1e-6), (trial.name, column)
    return parts


def check_results(experiment: Path, trials: int, missing: dict | None = None) -> dict:
    """Nothing lost, nothing counted twice: exactly `trials` trial directories, each record checked,
    and the analysis shows every epoch of every trial exactly once, from the attempt that went on
    (`missing`: trial_id -> the reports --resume said had not reached storage)."""
    dirs = trial_dirs(experiment)
    assert len(dirs) == trials, [d.name for d in dirs]
    missing = missing or {}
    records = {(t := d.name.split("_")[2]): check_record(d, missing.get(t, range(0))) for d in dirs}
    history = load_history(experiment)
    assert sorted(history["trial_id"].unique()) == sorted(records)
    for trial_id, parts in records.items():
        mine = history[history["trial_id"] == trial_id]
        recorded = sorted(set(pd.concat(parts)["training_iteration"]))
        assert mine["epoch"].tolist() == [float(e) for e in recorded], trial_id
        latest = pd.concat(parts).drop_duplicates("training_iteration", keep="last")
        assert mine["fid"].tolist() == pytest.approx(latest["fid"].tolist()), trial_id
        assert mine["node_ip"].tolist() == latest["node_ip"].tolist(), trial_id
    trial_frame = load_trials(experiment)
    assert sorted(trial_frame["trial_id"]) == sorted(records)
    return records


def test_workers_get_data_only_through_the_object_store(cluster):
    """The fixture's premise, checked on the nodes themselves: on each worker the data and cache
    directories a trial would fall back to do not exist (tasks pinned to each node look)."""
    workers = healthy_workers(cluster)
    seen = cluster.python("""
        import os
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as On
        @ray.remote(num_cpus=0)
        def look():
            paths = [os.environ["GANTUNE_DATA_DIR"], os.environ["GANTUNE_CACHE_DIR"]]
            return ray.util.get_node_ip_address(), [os.path.exists(p) for p in paths]
        print(json.dumps([ray.get(look.options(scheduling_strategy=On(n, soft=False)).remote())
                          for n in %r]))
    """ % [w.node_id for w in workers])
    assert seen == [[w.ip, [False, False]] for w in workers]


def test_node_loss_moves_trials_to_the_surviving_worker(cluster, data_dir, tmp_path):
    """Two 0.5-GPU trials per worker; one worker is SIGKILLed mid-search. Its trials are
    rescheduled on the survivor and resume from their last checkpoint: every epoch exactly once."""
    survivor, doomed = healthy_workers(cluster)
    experiment = tmp_path / "store" / "nodeloss"
    started = time.time()
    driver = run_search(cluster, data_dir, tmp_path / "driver.log", "--num-samples", "4", "--max-failures", "2",
                        "--storage-path", str(tmp_path / "store"), "--name", "nodeloss")
    try:
        def all_mid_run():
            dirs = trial_dirs(experiment)
            return len(dirs) == 4 and all(2 <= last_checkpoint(d) < EPOCHS - 1 for d in dirs)
        wait_for(all_mid_run, 240, "four trials mid-run", driver)
        killed = doomed.kill()
        persisted = {d.name.split("_")[2]: last_checkpoint(d) for d in trial_dirs(experiment)}  # index = epoch - 1
        driver.wait(timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()
    wall = time.time() - started
    output = (tmp_path / "driver.log").read_text()
    assert driver.returncode == 0, output[-4000:]
    assert "best: fid=" in output

    records = check_results(experiment, trials=4)
    trials = load_trials(experiment).set_index("trial_id")
    # each ran to its last epoch and ended by itself (tiny GANs may well be judged collapsed)
    assert trials["end_reason"].isin(FINISHED).all(), trials["end_reason"]
    assert (trials["epochs_run"] == EPOCHS).all() and (trials["gpus"] == 0.5).all()

    moved, rerun = [], {}
    for trial_id, parts in records.items():
        nodes = [part["node_ip"].iloc[0] for part in parts]
        assert set(nodes) <= {survivor.ip, doomed.ip}, nodes  # never the head
        if nodes[0] == doomed.ip:  # lost with its node: one restart, on the survivor
            moved.append(trial_id)
            assert nodes == [doomed.ip, survivor.ip] and len(parts[0]) >= 2, (trial_id, nodes)  # caught mid-run
            resumed = parts[1]["epoch"].iloc[0]
            # epochs the lost attempt had finished and checkpointed to storage, then done again
            rerun[trial_id] = persisted[trial_id] + 1 - (resumed - 1)
        else:
            assert nodes == [survivor.ip], (trial_id, nodes)
        assert trials.loc[trial_id, "num_failures"] == len(parts) - 1
    assert len(moved) == 2, moved  # both of the lost worker's 0.5-GPU trials
    # a trial starts an epoch only once the driver has registered the last one's checkpoint, so
    # at most the epoch whose checkpoint was in flight at the kill is done again
    assert all(0 <= r <= 1 for r in rerun.values()), rerun

    first_attempts = pd.concat([parts[0] for parts in records.values()])
    for worker in (survivor, doomed):  # fractional GPUs: two trials at once on each worker
        on_worker = first_attempts[first_attempts["node_ip"] == worker.ip]
        assert on_worker["trial_id"].nunique() == 2, worker.name
        spans = on_worker.groupby("trial_id")["timestamp"].agg(["min", "max"])
        assert spans["min"].max() <= spans["max"].min(), spans
    print(f"\nnode loss: killed {doomed.name} ({len(killed)} processes: {killed}); moved {len(moved)} trials; "
          f"epochs re-run per moved trial {rerun}; wall {wall:.1f} s")


def test_driver_loss_then_resume_finishes_the_search(cluster, data_dir, tmp_path):
    """The driver is SIGKILLed mid-search (its trials die with it); `tuner/run.py --resume` on the
    same storage path finishes every trial from its checkpoint, with nothing lost or duplicated."""
    healthy_workers(cluster)
    storage, name = tmp_path / "store", "driverloss"
    experiment = storage / name
    common = ["--num-samples", "4", "--storage-path", str(storage), "--name", name]
    driver = run_search(cluster, data_dir, tmp_path / "driver.log", *common)
    try:
        wait_for(lambda: len(dirs := trial_dirs(experiment)) == 4
                 and all(2 <= last_checkpoint(d) < EPOCHS - 1 for d in dirs), 240, "four trials mid-run", driver)
        os.kill(driver.pid, signal.SIGKILL)
        assert driver.wait(timeout=30) == -signal.SIGKILL
    finally:
        if driver.poll() is None:
            driver.kill()
    assert trial_dirs(experiment) and not load_trials(experiment)["end_reason"].isin(FINISHED).all()
    # Ray prunes a checkpoint when it registers a newer one and the snapshot naming the newer one
    # reaches storage a moment later; a kill in that moment leaves a snapshot naming a deleted
    # checkpoint. Make it certain for every trial: delete the checkpoint the snapshot names (if the
    # kill already did, keep what is there). Each must resume from the newest one left (older or
    # newer than the deleted one), or from the newest one whose report is on the record.
    _, _, _, unfinished = unfinished_trials(str(experiment))
    assert len(unfinished) == 4
    for _, trial in unfinished:
        shutil.rmtree(experiment / trial.storage.trial_dir_name / named_checkpoint(trial), ignore_errors=True)
    persisted = {d.name.split("_")[2]: last_checkpoint(d) for d in trial_dirs(experiment)}

    resumed = run_search(cluster, data_dir, tmp_path / "resume.log", *common, "--resume")
    try:
        resumed.wait(timeout=300)
    finally:
        if resumed.poll() is None:
            resumed.kill()
    output = (tmp_path / "resume.log").read_text()
    assert resumed.returncode == 0, output[-4000:]
    assert "best: fid=" in output
    # trial -> (the checkpoint it resumed from, the last report on its record on storage)
    repointed = {trial_id: (int(index), int(recorded)) for trial_id, index, recorded in re.findall(
        r"resume: trial (\w+): .* resumes from checkpoint_(\d+); its record on storage ends at report (\d+)", output)}
    assert {t.trial_id for _, t in unfinished} == set(repointed), output[-4000:]

    # checkpoint_i holds report i + 1: those after the record's end may be missing from it
    records = check_results(experiment, trials=4, missing={t: range(recorded + 1, resumed_from + 2)
                                                            for t, (resumed_from, recorded) in repointed.items()})
    trials = load_trials(experiment).set_index("trial_id")
    assert trials["end_reason"].isin(FINISHED).all() and (trials["epochs_run"] == EPOCHS).all()
    rerun = {}
    for trial_id, parts in records.items():
        assert len(parts) == 2, trial_id  # every trial was cut by the kill and resumed once
        rerun[trial_id] = persisted[trial_id] + 1 - (parts[1]["epoch"].iloc[0] - 1)
        resumed_from, recorded = repointed[trial_id]
        assert parts[1]["epoch"].iloc[0] == resumed_from + 2, trial_id
        # the newest checkpoint left, or the newest one whose report is on the record when that one's is not
        assert resumed_from == persisted[trial_id] or resumed_from + 1 <= recorded < persisted[trial_id] + 1, trial_id
    print(f"\ndriver loss: epochs re-run per trial after --resume {rerun}; "
          f"(checkpoint resumed from, last report on storage) {repointed}")


def test_storage_that_stops_taking_writes_stops_the_run_clearly(cluster, data_dir, tmp_path):
    """The storage path lives on a mount (here the mount point `mnt` is a symlink to the disk
    directory). Mid-run the mount goes away: `mnt` is atomically replaced by a link to a regular
    file, so every write under the storage path fails with ENOTDIR, for root as for anyone
    (chmod would not stop root). The driver notices within seconds, stops the search and exits
    with one clear line; everything recorded until then stays readable by the analysis."""
    healthy_workers(cluster)
    disk, mount = tmp_path / "disk", tmp_path / "mnt"
    disk.mkdir()
    mount.symlink_to(disk)
    storage, name = mount / "results", "lost"
    recorded = disk / "results" / name
    log, errors = tmp_path / "driver.log", tmp_path / "driver.err"
    driver = cluster.driver([RUN, *SEARCH, "--num-samples", "4", "--storage-path", str(storage), "--name", name],
                            env=driver_env(data_dir), stdout=log.open("w"), stderr=errors.open("w"))
    try:
        wait_for(lambda: len(dirs := trial_dirs(recorded)) == 4 and all(last_checkpoint(d) >= 2 for d in dirs)
                 and all(recorded_reports(d) >= 2 for d in dirs), 240, "four trials with results", driver)
        (tmp_path / "unmounted").write_text("")
        (tmp_path / "mnt.new").symlink_to(tmp_path / "unmounted")
        os.replace(tmp_path / "mnt.new", mount)  # atomic: no moment where `mnt` could be re-created as a dir
        broke_at = time.time()
        driver.wait(timeout=180)
    finally:
        if driver.poll() is None:
            driver.kill()
    stopped_after = time.time() - broke_at
    assert driver.returncode == 2, errors.read_text()[-4000:]
    # one line of ours (Ray's own log lines around it carry timestamps or a (process) prefix)
    [line] = [line for line in errors.read_text().splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: storage-path: {storage} is not writable (Not a directory)"), line
    assert "stopped taking writes during the run" in line and line.endswith(str(storage / name))
    print(f"\nstorage lost: the driver stopped {stopped_after:.1f} s later: {line}")
    assert stopped_after < 60  # stopped, not every trial failing and retrying through its epochs

    # what was recorded until the storage went away: Ray's raw record, and the analysis shows all of it
    on_disk = {d.name.split("_")[2]: raw_results(d) for d in trial_dirs(recorded)}
    assert len(on_disk) == 4 and all(len(rows) >= 2 for rows in on_disk.values())
    trials = load_trials(recorded)
    assert sorted(trials["trial_id"]) == sorted(on_disk)
    history = load_history(recorded)
    for trial_id, rows in on_disk.items():
        epochs = history.loc[history["trial_id"] == trial_id, "epoch"].tolist()
        assert epochs == [float(e) for e in range(1, len(rows) + 1)] == rows["epoch"].tolist(), trial_id


NOT_INSTALLED = '''"""On this node the project is not installed: importing its packages fails as it would."""
import sys


class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("models", "tuner", "search_spaces"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, NotInstalled())
'''


def test_worker_without_the_project_fails_its_trials_clearly(cluster, data_dir, tmp_path):
    """A worker joins whose Python cannot import the project (its PYTHONPATH brings a
    sitecustomize that makes `models`, `tuner` and `search_spaces` unimportable, as on a node
    where the project was never installed; Ray and torch are there). Its trials fail with one line
    naming the node and the missing package; the search goes on and finishes on the healthy node."""
    healthy, *others = [w for w in cluster.workers.values() if w.alive()]
    for other in others:
        other.stop()
    (tmp_path / "no-project").mkdir()
    (tmp_path / "no-project" / "sitecustomize.py").write_text(NOT_INSTALLED)
    bad = add_worker(cluster, {"PYTHONPATH": str(tmp_path / "no-project")})
    try:
        imports = cluster.python("""
            import importlib
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as On
            @ray.remote(num_cpus=0)
            def can_import(name):
                try:
                    importlib.import_module(name)
                    return True
                except ModuleNotFoundError:
                    return False
            print(json.dumps([ray.get(can_import.options(scheduling_strategy=On(node, soft=False)).remote(name))
                              for node in %r for name in ("models", "torch")]))
        """ % [bad.node_id, healthy.node_id])
        assert imports == [False, True, True, True]  # the premise: only the project is missing, only there
        experiment = tmp_path / "store" / "noproject"
        driver = run_search(cluster, data_dir, tmp_path / "driver.log", "--num-samples", "4", "--max-failures", "0",
                            "--epochs", "3", "--storage-path", str(tmp_path / "store"), "--name", "noproject")
        try:
            driver.wait(timeout=300)
        finally:
            if driver.poll() is None:
                driver.kill()
    finally:
        bad.stop()
    output = (tmp_path / "driver.log").read_text()
    assert driver.returncode == 1, output[-4000:]  # a search with errored trials fails, saying how many
    assert "2 trial(s) errored" in output

    trials = load_trials(experiment).set_index("trial_id")
    failed, finished = trials[trials["end_reason"] == "error"], trials[trials["end_reason"] != "error"]
    assert len(failed) == 2  # the bad node's two 0.5-GPU slots
    for message in failed["error"]:
        assert f"node {bad.ip} " in message and f"node id {bad.node_id[:12]}" in message, message
        assert "package 'models' is missing there" in message, message
    assert finished["end_reason"].isin(FINISHED).all() and (finished["epochs_run"] == 3).all()
    history = load_history(experiment)
    assert set(history["node_ip"]) == {healthy.ip} and set(history["trial_id"]) == set(finished.index)
    print(f"\nno project on {bad.ip}: {failed['error'].iloc[0]}")
