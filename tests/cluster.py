"""A real multi-node Ray cluster on one machine, for the reliability tests.

Every node is its own `ray start --block` process (in a session of its own) with its own
--temp-dir, its own ports and its own loopback address (head 127.0.0.1, workers 127.0.0.2,
127.0.0.3, ...), so the `node_ip` a trial reports says which node ran it, as on a real cluster.
Token authentication stays on, with a token private to this cluster (`RAY_AUTH_TOKEN` in the
nodes' and drivers' environments), so it never reads or rewrites ~/.ray/auth_token (unless asked
to use that file, as a user's `ray start` does). The head
runs the GCS with short health checks, so a killed node is declared dead in about 5 s.

Nothing here runs Ray in the test process: everything that talks to the cluster is a
subprocess (`Cluster.python`, `Cluster.driver`), so no Ray state leaks into other test modules.
A node is stopped or killed by the PIDs its start left behind (the `ray start --block` process
and all its descendants, each PID checked against its start time before it is signalled), never
by name and never with `ray stop`, which would also stop other people's clusters on the machine.
Nodes and drivers get SIGTERM if the test process dies, so an aborted run leaves nothing behind.
"""

import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

RAY = Path(sys.executable).with_name("ray")
# GCS health checks: a node whose raylet stops answering is dead after ~5 s instead of ~30 s.
HEALTH_CHECKS = {"RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "5000",
                 "RAY_health_check_failure_threshold": "5", "RAY_health_check_initial_delay_ms": "1000"}
PORT_FLAGS = ("--node-manager-port", "--object-manager-port", "--metrics-export-port",
              "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--runtime-env-agent-port")


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free right now (all bound at once, so none is handed out twice)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _stat(pid) -> tuple[int, int] | None:
    """(parent pid, start time) of a live process, from /proc/PID/stat; None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[1]), int(fields[19])) if fields[0] != "Z" else None


def process_tree(root: int) -> dict[int, int]:
    """`root` and all its live descendants, as {pid: start time} (a PID plus its start time
    names one process even if the PID is later reused)."""
    stats = {int(e.name): _stat(e.name) for e in Path("/proc").iterdir() if e.name.isdigit()}
    stats = {pid: st for pid, st in stats.items() if st}
    tree, frontier = {}, [root] if root in stats else []
    while frontier:
        pid = frontier.pop()
        tree[pid] = stats[pid][1]
        frontier.extend(child for child, (ppid, _) in stats.items() if ppid == pid)
    return tree


def is_running(pid: int, started: int) -> bool:
    """Is the process that had this PID and start time still running?"""
    current = _stat(pid)
    return bool(current) and current[1] == started


def signal_all(processes: dict[int, int], sig) -> list[int]:
    """Send `sig` to each process of {pid: start time} that is still that same process."""
    sent = []
    for pid, started in processes.items():
        if is_running(pid, started):
            try:
                os.kill(pid, sig)
                sent.append(pid)
            except ProcessLookupError:
                pass
    return sent


def stop_with_parent() -> None:
    """In the child, before exec: SIGTERM it when its parent (the test process) dies, however it
    dies, so a killed test run never leaves nodes behind (SIGTERM stops a node gracefully)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


@dataclass
class Node:
    name: str
    ip: str
    temp_dir: Path
    log: Path
    process: subprocess.Popen  # `ray start --block`: the node's processes are it and its descendants
    node_id: str = ""
    env: dict = field(default_factory=dict)

    def pids(self) -> dict[int, int]:
        """Every live process of this node as {pid: start time}: the start process, the GCS (head),
        raylet, agents, and the Ray workers (children of the raylet, in sessions of their own)."""
        return process_tree(self.process.pid)

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> list[int]:
        """Lose the node at once, as if its machine died: SIGSTOP every process of it (so nothing
        reacts or forks), then SIGKILL them all. Returns the PIDs killed."""
        processes = self.pids()
        signal_all(processes, signal.SIGSTOP)
        processes.update(self.pids())  # anything forked before the stop landed
        signal_all(processes, signal.SIGKILL)  # children not reached die with their parent (PDEATHSIG)
        self.process.wait(timeout=30)
        deadline = time.time() + 10
        while left := [pid for pid, started in processes.items() if is_running(pid, started)]:
            if time.time() > deadline:
                raise RuntimeError(f"{self.name}: processes survived SIGKILL: {left}")
            time.sleep(0.2)
        return sorted(processes)

    def terminate(self) -> dict[int, int]:
        """Graceful: SIGTERM makes `ray start --block` stop the node's processes."""
        processes = self.pids()
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        return processes

    def reap(self, processes: dict[int, int], timeout: float = 30) -> None:
        """Wait for a terminated node's processes to go; SIGKILL whichever of them is left."""
        deadline = time.time() + timeout
        while time.time() < deadline and any(is_running(pid, started) for pid, started in processes.items()):
            self.process.poll()  # reap the start process (our child) so it does not linger as a zombie
            time.sleep(0.3)
        signal_all(processes, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        self.reap(self.terminate())


class Cluster:
    """`Cluster(root)`, then `.start_head()`, `.add_worker(...)`, ..., and `.shutdown()`."""

    def __init__(self, root: Path, base_env: dict | None = None, private_token: bool = True):
        self.root = Path(root)  # node logs; the nodes' temp dirs go to a short path (socket names <= 107 bytes)
        self.root.mkdir(parents=True, exist_ok=True)
        self.temp_root = Path(tempfile.mkdtemp(prefix="gantune-ray-", dir="/tmp"))
        self.port, self.dashboard_port = free_ports(2)
        self.address = f"127.0.0.1:{self.port}"
        self.base_env = {**(base_env if base_env is not None else os.environ),
                         "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0", **HEALTH_CHECKS}
        self.base_env.pop("RAY_ADDRESS", None)
        self.base_env.pop("RAY_AUTH_TOKEN", None)
        if private_token:  # otherwise every process reads ~/.ray/auth_token, which the caller generates
            self.base_env["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
        self.head: Node | None = None
        self.workers: dict[str, Node] = {}

    @property
    def driver_env(self) -> dict:
        """The environment of a driver on the head machine: RAY_ADDRESS and the cluster's token."""
        return {**self.base_env, "RAY_ADDRESS": self.address}

    def _start(self, name: str, ip: str, args: list, extra_env: dict | None, timeout: float,
               attempts: int = 3, wrapper: list | None = None) -> Node:
        """`ray start --block` for one node; tried again (with fresh ports) if it did not come up.
        `wrapper` is a command that execs the rest (e.g. one giving the node a filesystem of its own)."""
        temp_dir = self.temp_root / name
        temp_dir.mkdir(exist_ok=True)
        log = self.root / f"{name}.log"
        env = {**self.base_env, **(extra_env or {})}
        for attempt in range(attempts):
            ports = [arg for flag, port in zip(PORT_FLAGS, free_ports(len(PORT_FLAGS))) for arg in (flag, str(port))]
            cmd = [*(wrapper or []), str(RAY), "start", "--block", f"--node-ip-address={ip}", f"--temp-dir={temp_dir}",
                   "--object-store-memory=200000000", "--disable-usage-stats", *ports, *args]
            process = subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                                       start_new_session=True, cwd=self.root, preexec_fn=stop_with_parent)
            node = Node(name, ip, temp_dir, log, process, env=env)
            deadline = time.time() + timeout
            while "Ray runtime started" not in log.read_text():
                if process.poll() is not None or time.time() > deadline:
                    node.stop()
                    if attempt + 1 < attempts:  # a port taken meanwhile, a GCS too busy to answer in time
                        break
                    raise RuntimeError(f"{name} did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.3)
            else:
                return node
        raise AssertionError("unreachable")

    def start_head(self, timeout: float = 120, args: tuple = (), extra_env: dict | None = None,
                   num_cpus: float = 0) -> Node:
        """A head with no GPUs and, by default, no CPUs: it runs the GCS and the drivers, never a
        trial. `args` go to its `ray start` (e.g. --autoscaling-config)."""
        self.head = self._start("head", "127.0.0.1", [
            "--head", f"--port={self.port}", f"--num-cpus={num_cpus:g}", "--num-gpus=0", "--include-dashboard=false",
            f"--dashboard-port={self.dashboard_port}", *args], extra_env, timeout)
        return self.head

    def add_worker(self, name: str, num_cpus: float, num_gpus: float, extra_env: dict | None = None,
                   timeout: float = 120, wrapper: list | None = None) -> Node:
        ip = f"127.0.0.{2 + len(self.workers)}"
        node = self._start(name, ip, [f"--address={self.address}", f"--num-cpus={num_cpus:g}",
                                      f"--num-gpus={num_gpus:g}"], extra_env, timeout, wrapper=wrapper)
        self.workers[name] = node
        node.node_id = self.wait_for_node(ip)
        return node

    def python(self, code: str, timeout: float = 120) -> object:
        """Run `code` as a driver connected to the cluster; it prints one JSON value, returned here."""
        prelude = "import json, ray\nray.init(address=%r, log_to_driver=False)\n" % self.address
        done = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], env=self.driver_env,
                              capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if done.returncode != 0:
            raise RuntimeError(f"driver snippet failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    def nodes(self) -> list[dict]:
        return self.python("print(json.dumps([{k: n[k] for k in ('NodeID', 'NodeManagerAddress', 'Alive',"
                           " 'Resources')} for n in ray.nodes()]))")

    def wait_for_node(self, ip: str, timeout: float = 60) -> str:
        deadline = time.time() + timeout
        while time.time() < deadline:
            alive = [n for n in self.nodes() if n["NodeManagerAddress"] == ip and n["Alive"]]
            if alive:
                return alive[0]["NodeID"]
            time.sleep(1)
        raise RuntimeError(f"no live node at {ip} after {timeout} s")

    def driver(self, args: list, **popen) -> subprocess.Popen:
        """Start `python ARGS` as a driver of this cluster (RAY_ADDRESS), in a session of its own."""
        return subprocess.Popen([sys.executable, *args], env={**self.driver_env, **popen.pop("env", {})},
                                start_new_session=True, preexec_fn=stop_with_parent, **popen)

    def shutdown(self) -> None:
        """Stop every node, workers and head together; nothing of this cluster is left running."""
        nodes = [*self.workers.values(), *([self.head] if self.head else [])]
        started = [(node, node.terminate()) for node in nodes]
        for node, pids in started:
            node.reap(pids)
        shutil.rmtree(self.temp_root, ignore_errors=True)
