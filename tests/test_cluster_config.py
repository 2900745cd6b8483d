"""cluster.yaml is valid under the cluster-config schema shipped in the installed ray package."""

import json
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml

from tests.conftest import REPO


@pytest.fixture(scope="module")
def config():
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def test_cluster_yaml_matches_rays_schema(config):
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(config, schema)


def test_cluster_has_a_cpu_head_and_autoscaling_gpu_workers(config):
    workers = config["available_node_types"]["gpu_worker"]
    assert workers["min_workers"] < workers["max_workers"]
    assert config["available_node_types"][config["head_node_type"]]["resources"] == {"CPU": 0}
    assert any("pip install" in c and "gantune" in c for c in config["setup_commands"])


def test_schema_rejects_a_broken_config(config):
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**config, "max_workers": "many"}, schema)


def test_gpu_workers_are_gpu_instances_that_can_write_the_bucket(config):
    head = config["available_node_types"][config["head_node_type"]]
    workers = config["available_node_types"]["gpu_worker"]
    assert "GPU" not in head["resources"]  # trials (and their GPU shares) go to the workers only
    # Ray's AWS provider reads a worker's GPUs from its instance type: g/p families carry NVIDIA GPUs
    assert workers["node_config"]["InstanceType"].split(".")[0][0] in "gp"
    assert workers["resources"] == {}  # so the autoscaler fills in the type's GPU count itself
    assert workers["node_config"]["IamInstanceProfile"]["Name"]  # Ray gives its S3 profile to the head only


def test_setup_installs_with_the_python_that_ray_submit_runs(config):
    import inspect

    from ray.scripts import scripts
    assert '["python", target]' in inspect.getsource(scripts.submit.callback)  # what `ray submit` executes on the head
    setup = config["setup_commands"]
    assert any("pip install" in c and "gantune" in c and c.startswith("python -m pip") for c in setup)
    assert any("command -v python" in c for c in setup)  # `python` made to exist where only python3 does


def test_only_the_source_is_synced_to_the_nodes(config):
    assert {".venv", "runs", ".cache", ".git"} <= set(config["rsync_exclude"])
    assert ".gitignore" in config["rsync_filter"]


def test_every_node_starts_ray_with_token_auth_and_a_private_dashboard(config):
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    starts = [c for c in config["head_start_ray_commands"] + config["worker_start_ray_commands"] if "ray start" in c]
    assert len(starts) == 2 and all(c.startswith("RAY_AUTH_MODE=token ray start") for c in starts)
    head_start = next(c for c in config["head_start_ray_commands"] if "--head" in c)
    assert "--dashboard-host=127.0.0.1" in head_start and "0.0.0.0" not in head_start


def test_the_aws_extra_brings_boto3_for_the_launcher():
    import tomllib
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(dep.startswith("boto3") for dep in extras["aws"])
