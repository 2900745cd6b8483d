"""The storage check on a real two-node loopback cluster (tests/cluster.py): tuner/run.py refuses a
storage path the other node cannot see, in one line and exit 2, and runs with one it can.

On one machine every path is shared, so the worker node is started in a mount namespace of its own
(`unshare -m`) with an empty tmpfs mounted over the "head-local" directory: in that node's
processes the directory exists but holds none of the driver's files, as a head's local disk looks
from another machine. Everything else (the shared directory, the datasets) it sees as the head does.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

import pytest

from tests.cluster import Cluster
from tests.conftest import REPO, read_result_json

pytestmark = pytest.mark.slow

RUN = str(REPO / "tuner" / "run.py")
TINY = ["--space", "smoke", "--model", "gan", "--limit", "300", "--epochs", "1", "--num-samples", "1",
        "--eval-samples", "128", "--gpus-per-trial", "0", "--cpus-per-trial", "1"]
# sh execs the node after mounting an empty tmpfs over $0 in the mount namespace unshare gave it
PRIVATE_DIR = 'mount -t tmpfs gantune-head-local "$0" && exec "$@"'


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Head (no trial resources) + one worker (1 CPU) that cannot see `cluster.head_local`."""
    root = tmp_path_factory.mktemp("storage")
    cluster = Cluster(root)
    cluster.head_local, cluster.shared = root / "head-local", root / "shared"
    cluster.head_local.mkdir()
    cluster.shared.mkdir()
    try:
        cluster.start_head(timeout=300)
        cluster.add_worker("worker1", num_cpus=1, num_gpus=0, timeout=300,
                           wrapper=["unshare", "--mount", "sh", "-c", PRIVATE_DIR, str(cluster.head_local)])
        yield cluster
    finally:
        cluster.shutdown()


def run_search(cluster, data_dir, *args):
    env = {**cluster.driver_env, "GANTUNE_DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, RUN, *TINY, *args], env=env, capture_output=True, text=True,
                          timeout=900, cwd=cluster.root)


def probes_left(directory) -> list:
    return [p.name for p in directory.rglob(".gantune-shared-probe-*")]


def test_the_worker_really_cannot_see_the_head_local_directory(cluster):
    """The condition itself, checked from inside the worker node's processes, not assumed."""
    (cluster.head_local / "written-on-head").write_text("x")
    worker = cluster.workers["worker1"].node_id
    seen = cluster.python(f"""
        import os
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        @ray.remote(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy({worker!r}, soft=False))
        def listing(paths):
            return ray.get_runtime_context().get_node_id(), [sorted(os.listdir(p)) for p in paths]
        print(json.dumps(ray.get(listing.remote([{str(cluster.head_local)!r}, {str(cluster.shared.parent)!r}]))))
        """, timeout=600)
    (cluster.head_local / "written-on-head").unlink()
    assert seen[0] == worker
    assert seen[1][0] == [] and "shared" in seen[1][1]


@pytest.mark.parametrize("uri", [False, True], ids=["path", "file-uri"])
def test_a_path_the_other_node_cannot_see_is_one_line_and_exit_2(cluster, data_dir, uri):
    storage = f"file://{cluster.head_local}" if uri else str(cluster.head_local)
    done = run_search(cluster, data_dir, "--storage-path", storage, "--name", "refused")
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2, done.stderr[-3000:]
    assert len(errors) == 1 and done.stderr.strip().splitlines()[-1] == errors[0]
    assert "Traceback" not in done.stderr
    line = errors[0]
    assert line.startswith(f"error: --storage-path {storage} is not shared with node 127.0.0.2: ")
    assert all(fix in line for fix in ("s3://", "gs://", "NFS"))
    assert not list(cluster.head_local.glob("refused/train_trial_*"))  # refused before any trial
    assert probes_left(cluster.head_local) == []


def test_a_path_every_node_sees_runs_the_search_on_the_other_node(cluster, data_dir):
    done = run_search(cluster, data_dir, "--storage-path", str(cluster.shared), "--name", "shared")
    assert done.returncode == 0, done.stderr[-3000:]
    trials = list((cluster.shared / "shared").glob("train_trial_*"))
    assert len(trials) == 1
    assert read_result_json(trials[0] / "result.json")["node_ip"].tolist() == ["127.0.0.2"]
    assert probes_left(cluster.shared) == []


def test_a_single_node_ray_starts_no_probe(tmp_path):
    """Its own local Ray (never the cluster above): nothing is written (the directory's mtime would
    change) and no node is probed."""
    ray_dir = tempfile.mkdtemp(prefix="gantune-ray-", dir="/tmp")  # short: socket paths <= 107 bytes
    code = f"""
        import json, os, ray
        from tuner.storage_check import check_shared_storage
        ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False, _temp_dir={ray_dir!r})
        before = os.stat({str(tmp_path)!r}).st_mtime_ns
        checked = check_shared_storage({str(tmp_path)!r})
        print(json.dumps([checked, os.stat({str(tmp_path)!r}).st_mtime_ns == before, len(ray.nodes())]))
        """
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    try:
        done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                              capture_output=True, text=True, timeout=300, cwd=REPO)
    finally:
        shutil.rmtree(ray_dir, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [[], True, 1]
