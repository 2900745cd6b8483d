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
