"""The autoscaling path on one machine: cluster-local.yaml (cluster.yaml's node types) under Ray's fake
multi-node provider, started with Ray's own command (`RAY_FAKE_CLUSTER=1 ray start --head
--autoscaling-config=...`), and tuner/run.py driving it with --gpus-per-trial 0.25: the trials wait,
the autoscaler adds a GPU worker, four trials share its (logical) GPU, the search finishes and the
analysis ranks them. `ray up` cannot start this provider (it reaches its head over SSH); what
`ray submit` composes is checked with recording `ssh` and `rsync` stand-ins: the upload of
tuner/run.py and the command run on the head. SSH itself does not run here.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pandas as pd
import pytest
import ray
import yaml

from tests.cluster import RAY, Cluster
from tests.conftest import REPO, read_result_json

pytestmark = pytest.mark.slow
FAKE_HEAD_NODE_ID = pytest.importorskip(
    "ray.autoscaler._private.fake_multi_node.node_provider",
    reason="this Ray has no fake multi-node provider to run cluster-local.yaml with").FAKE_HEAD_NODE_ID

RUN = str(REPO / "tuner" / "run.py")
SEARCH = ["--space", "smoke", "--model", "gan", "--limit", "300", "--epochs", "2", "--num-samples", "4",
          "--eval-samples", "128", "--gpus-per-trial", "0.25", "--cpus-per-trial", "1", "--max-concurrent", "4",
          "--no-early-stop"]
FAKE_ENV = {"RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
# stand-ins for ssh and rsync: record their arguments (NUL-separated, one call a line) and succeed
RECORDER = '#!/bin/sh\nprintf "%s\\0" "$(basename "$0")" "$@" >> "$CALLS"\nprintf "\\n" >> "$CALLS"\n'


@pytest.fixture(scope="module")
def local_config():
    return yaml.safe_load((REPO / "cluster-local.yaml").read_text())


def test_cluster_local_yaml_has_cluster_yaml_node_types(local_config):
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(local_config, schema)
    cloud = yaml.safe_load((REPO / "cluster.yaml").read_text())
    local_types, cloud_types = local_config["available_node_types"], cloud["available_node_types"]
    local_head, cloud_head = local_config["head_node_type"], cloud["head_node_type"]
    assert set(local_types) - {local_head} == set(cloud_types) - {cloud_head} == {"gpu_worker"}
    assert local_types[local_head]["resources"] == cloud_types[cloud_head]["resources"] == {"CPU": 0}
    workers = local_types["gpu_worker"]
    assert workers["min_workers"] == cloud_types["gpu_worker"]["min_workers"] == 0
    assert workers["resources"]["GPU"] == 1  # a logical GPU: 4 trials at 0.25


@pytest.fixture(scope="module")
def fake_cluster(tmp_path_factory, local_config):
    """cluster-local.yaml with its gcs_address on this test's own port (never 6379, which another
    Ray on the machine may hold), started by Ray's own `ray start --head --autoscaling-config`."""
    root = tmp_path_factory.mktemp("fake-cluster")
    cluster = Cluster(root)
    config = {**local_config, "provider": {**local_config["provider"], "gcs_address": cluster.address}}
    (root / "cluster-local.yaml").write_text(yaml.safe_dump(config))
    try:
        cluster.start_head(timeout=300, args=(f"--autoscaling-config={root / 'cluster-local.yaml'}",),
                           extra_env=FAKE_ENV)
        yield cluster
    finally:
        cluster.shutdown()


def alive_nodes(cluster) -> list[dict]:
    """The live nodes and their resources (a generous timeout: a driver starts slowly on a busy box)."""
    nodes = cluster.python("print(json.dumps([{k: n[k] for k in ('Alive', 'Resources')} for n in ray.nodes()]))",
                           timeout=600)
    return [node for node in nodes if node["Alive"]]


def peak_overlap(rows_by_trial: list[pd.DataFrame]) -> int:
    """Most trials running at one moment, each from its first report's start to its last report."""
    spans = []
    for rows in rows_by_trial:
        ends = pd.to_datetime(rows["timestamp"], unit="s").astype("int64") / 1e9  # pandas reads them as dates
        spans.append((ends.iloc[0] - rows["time_this_iter_s"].iloc[0], ends.iloc[-1]))
    return max(sum(start <= moment < end for start, end in spans) for moment, _ in spans)


def test_the_autoscaler_adds_a_gpu_worker_that_four_trials_share(fake_cluster, data_dir):
    before = alive_nodes(fake_cluster)
    assert len(before) == 1 and not before[0]["Resources"].get("GPU")  # the head alone, no GPU yet
    storage = fake_cluster.root / "runs"
    log = fake_cluster.root / "driver.log"
    driver = fake_cluster.driver([RUN, *SEARCH, "--storage-path", str(storage), "--name", "autoscaled"],
                                 env={"GANTUNE_DATA_DIR": str(data_dir)}, stdout=log.open("w"),
                                 stderr=subprocess.STDOUT, text=True, cwd=fake_cluster.root)
    try:
        returncode = driver.wait(timeout=900)
    finally:
        if driver.poll() is None:
            driver.kill()
    output = log.read_text()
    assert returncode == 0, output[-4000:]
    # the trials waited: the driver saw no GPU and went on, leaving the request to the autoscaler
    assert "gpus-per-trial: 0.25 requested and the cluster has 0 GPU(s) now" in output

    monitor_log = next(fake_cluster.temp_root.glob("head/session_*/logs/monitor.log")).read_text()
    assert "Adding 1 node(s) of type gpu_worker" in monitor_log
    workers = [node for node in alive_nodes(fake_cluster) if node["Resources"].get("GPU")]
    assert len(workers) == 1 and workers[0]["Resources"]["GPU"] == 1  # one GPU node, for all four

    trials = sorted((storage / "autoscaled").glob("train_trial_*"))
    rows = [read_result_json(trial / "result.json") for trial in trials]
    assert len(rows) == 4 and all(r["epoch"].tolist() == [1.0, 2.0] for r in rows)
    assert len({r["node_ip"].iloc[-1] for r in rows}) == 1  # the head has no CPU: all on the one worker
    assert len({r["pid"].iloc[-1] for r in rows}) == 4 and {r["device"].iloc[-1] for r in rows} == {"cpu"}
    assert peak_overlap(rows) == 4  # 4 x 0.25 of one GPU, at the same time

    assert "Trials ranked" in output and "best: fid=" in output
    ranked = pd.read_csv(storage / "autoscaled" / "report" / "trials.csv", dtype={"trial_id": str})
    assert sorted(ranked["rank"]) == [1, 2, 3, 4]
    assert set(ranked["trial_id"]) == {json.loads((t / "result.json").read_text().splitlines()[0])["trial_id"]
                                       for t in trials}


def test_ray_submit_uploads_run_py_and_runs_it_with_python_on_the_head(tmp_path):
    """`ray submit cluster-local.yaml tuner/run.py -- ARGS` up to the SSH transport: Ray finds the
    provider's head and composes its rsync and ssh commands, which the stand-ins record."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("ssh", "rsync"):
        (bin_dir / tool).write_text(RECORDER)
        (bin_dir / tool).chmod(0o755)
    calls = tmp_path / "calls"
    env = {**os.environ, **FAKE_ENV, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls),
           "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run([str(RAY), "submit", str(REPO / "cluster-local.yaml"), "tuner/run.py", "--",
                           "--gpus-per-trial", "0.25", "--space", "smoke"],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    recorded = [line.split("\0")[:-1] for line in calls.read_text().splitlines()]
    assert [call[0] for call in recorded] == ["rsync", "ssh"]
    rsync, ssh = recorded
    assert rsync[-2:] == ["tuner/run.py", f"ubuntu@{FAKE_HEAD_NODE_ID}:~/run.py"]  # the script goes to the head
    assert f"ubuntu@{FAKE_HEAD_NODE_ID}" in ssh
    assert "(python ~/run.py --gpus-per-trial 0.25 --space smoke)" in ssh[-1]  # `python`, with the flags as given
