"""Storage every node sees, or a clear refusal before any trial runs.

Every trial writes its results and checkpoints to --storage-path from the node it runs on. A path on
the driver's disk is a different directory on every other node, and Ray Tune only finds out when
the first trial there reports (or, worse, the report silently misses those trials). So when the
connected cluster has live nodes other than the driver's, the driver writes a probe file under the
storage path and a task pinned to each other node reads it back; a node that cannot read it is one
line naming the path and how to fix it (it starts "--storage-path", not "storage-path:", which
tuner/run.py reads as storage that failed mid-run). Object-store URIs (s3://, gs://) are probed the same way,
through pyarrow.fs, which also catches a worker without credentials for the bucket. A single-node
Ray starts no task at all. Nodes an autoscaler adds after the check are not probed.
"""

import os
import sys
import uuid

from models.errors import UserInputError

PROBE_PREFIX = ".gantune-shared-probe-"
PROBE_TIMEOUT_S = 120.0  # a fresh node may need to start a Python worker first
FIX = ("use storage every node sees: --storage-path s3://BUCKET/PATH or gs://BUCKET/PATH (with read/write "
       "access on every node), or a directory on NFS mounted at the same path on every node")


def probe_location(storage_path: str) -> str:
    """Where the probe file goes: under the storage path, as an absolute path or the URI itself (Ray
    Tune resolves a relative storage path on the driver, so the other nodes get the absolute one)."""
    base = storage_path if "://" in storage_path else os.path.abspath(os.path.expanduser(storage_path))
    return f"{base.rstrip('/')}/{PROBE_PREFIX}{uuid.uuid4().hex}"


def other_alive_nodes() -> list[dict]:
    """ray.nodes() entries of the live nodes other than the one this driver is connected to."""
    import ray
    mine = ray.get_runtime_context().get_node_id()
    return [node for node in ray.nodes() if node["Alive"] and node["NodeID"] != mine]


def write_probe(location: str, token: str) -> None:
    import pyarrow.fs
    filesystem, path = pyarrow.fs.FileSystem.from_uri(location)
    with filesystem.open_output_stream(path) as stream:
        stream.write(token.encode())


def delete_probe(location: str) -> None:
    import pyarrow.fs
    try:
        filesystem, path = pyarrow.fs.FileSystem.from_uri(location)
        filesystem.delete_file(path)
    except (OSError, ValueError):  # best effort: a leftover probe is a few bytes, harmless
        pass


def check_shared_storage(storage_path: str, timeout: float = PROBE_TIMEOUT_S) -> list[str]:
    """Refuse (UserInputError) when a live node other than the driver's cannot read a file the driver
    wrote under `storage_path`. Returns the IPs of the nodes that read it; [] on a single-node Ray,
    where nothing is written and no task starts. A node that does not answer within `timeout` (busy,
    or gone meanwhile) is a warning on stderr: that proves nothing either way."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = other_alive_nodes()
    if not nodes:
        return []
    location, token = probe_location(storage_path), uuid.uuid4().hex
    try:
        write_probe(location, token)
    except (OSError, ValueError) as err:
        raise UserInputError(f"--storage-path {storage_path}: cannot write a file there ({first_line(err)})") from None

    def read_probe(location: str, token: str) -> str | None:
        """On the other node: None when the probe reads back as written, else what went wrong. Defined
        here, so Ray ships it by value and a node without gantune installed can still run it."""
        import pyarrow.fs
        try:
            filesystem, path = pyarrow.fs.FileSystem.from_uri(location)
            with filesystem.open_input_stream(path) as stream:
                found = stream.read().decode(errors="replace")
        except Exception as err:  # any failure to read is the answer, not a crash of the check
            return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        return None if found == token else "the file there holds something else"

    try:
        reader = ray.remote(num_cpus=0, max_retries=0)(read_probe)
        pending = {reader.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False))
                   .remote(location, token): node["NodeManagerAddress"] for node in nodes}
        done, late = ray.wait(list(pending), num_returns=len(pending), timeout=timeout)
        readers = []
        for ref in done:
            ip = pending[ref]
            try:
                problem = ray.get(ref)
            except ray.exceptions.RayError as err:  # the node died or could not take the task
                print(f"storage check: node {ip} could not run the probe ({first_line(err)}); not checked",
                      file=sys.stderr)
                continue
            if problem is not None:
                raise UserInputError(f"--storage-path {storage_path} is not shared with node {ip}: it cannot read "
                                     f"a file the driver wrote there ({problem}); trials there could not write "
                                     f"their results. {FIX}")
            readers.append(ip)
        for ref in late:
            ray.cancel(ref, force=True)
            print(f"storage check: node {pending[ref]} did not answer within {timeout:g} s; not checked",
                  file=sys.stderr)
        return readers
    finally:
        delete_probe(location)


def first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
