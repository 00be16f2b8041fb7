"""The Ray launcher across two nodes, and a node that dies mid-run.

`ray.cluster_utils.Cluster` starts a head node and a second node on this machine (two raylets,
each with its own resources), the way Ray's own tests fake a cluster. One instance is pinned to
the head by a custom resource, the other to the side node by its label (Ray's label_selector);
the side node is then removed while both instances run.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from colobench.records import read_jsonl
from conftest import pair_experiment, start_cli, wait_for_records, written

pytestmark = pytest.mark.xdist_group("ray")  # one Ray at a time, on one xdist worker

MiB = 2**20


@pytest.fixture(scope="module")
def two_nodes():
    pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    base = tempfile.mkdtemp(prefix="rc", dir="/tmp" if os.path.isdir("/tmp") else None)  # short: unix sockets
    saved = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = base  # the session and the cluster's address file stay in here
    os.environ.setdefault("RAY_worker_niceness", "0")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "resources": {"head": 1},
                                                            "object_store_memory": 80 * MiB, "include_dashboard": False})
    side = cluster.add_node(num_cpus=1, labels={"zone": "side"}, object_store_memory=80 * MiB)
    cluster.wait_for_nodes()
    try:
        yield cluster, side
    finally:
        cluster.shutdown()
        if saved is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = saved
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.ray
@pytest.mark.slow
def test_instances_on_two_nodes_and_a_node_that_dies(tmp_path: Path, cli_env: dict, cache_dir: Path, two_nodes):
    cluster, side = two_nodes
    side_id = side.node_id  # read now: the node object is torn down with the node
    # the fake backend (the launcher is what is tested): 120 requests of 80 ms, so both still run
    # seconds after the side node goes
    fake = "model: fake, backend: fake, fake: {ttft_ms: 10, tpot_ms: 10}"
    exp = pair_experiment(tmp_path / "nodes.yaml", cache_dir,
                          [f"{{name: a, {fake}, ray: {{resources: {{head: 0.5}}}}}}",
                           f"{{name: b, {fake}, ray: {{node_labels: {{zone: side}}}}}}"])
    out = tmp_path / "run"
    proc = start_cli(["run", str(exp), "-o", str(out), "--launcher", "ray", "--ray-address", cluster.address],
                     cli_env, tmp_path)
    b_records = out / "runs" / "colocated" / "records" / "b.jsonl"
    wait_for_records(proc, b_records, 6)
    time.sleep(1.5)  # a telemetry poll of the side node
    cluster.remove_node(side)
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 1, stderr  # ran, but a node died
    summary = written(out)
    workers = summary["runs"]["colocated"]["workers"]
    assert workers["b"]["status"] == "died" and workers["b"]["reason"].startswith("actor died"), workers["b"]
    a = summary["phases"]["colocated"]["a"]  # every record kept; only the overlap with b counts
    assert workers["a"]["status"] == "completed" and a["completed"] + a["outside_overlap"] == 120
    kept = [r for r in read_jsonl(b_records) if not r["warmup"] and not r["load_only"]]
    assert 6 <= len(kept) < 120 and summary["phases"]["colocated"]["b"]["completed"] + summary["phases"]["colocated"]["b"]["outside_overlap"] == len(kept)

    state = json.loads((out / "runs" / "colocated" / "run.json").read_text())
    actors = state["ray"]["actors"]
    assert actors["b"]["node_id"] == side_id != actors["a"]["node_id"]  # the label placed b on the side node
    devices = {i["name"]: i["device"] for i in state["instances"]}
    assert devices == {"a": f"cpu@{actors['a']['node_id'][:8]}", "b": f"cpu@{actors['b']['node_id'][:8]}"}
    # one kernel: both nodes share the driver's clock, so no estimate is applied
    assert all(a["clock"]["applied_offset_ns"] == 0 and "same kernel" in a["clock"]["method"] for a in actors.values())
    hosts = {json.loads(line)["device"] for line in (out / "runs" / "colocated" / "telemetry.jsonl").open()}
    assert hosts == {f"host@{actors['a']['node_id'][:8]}", f"host@{actors['b']['node_id'][:8]}"}
    assert "error" in state["ray"]["samplers"][actors["b"]["node_id"]]  # the dead node's sampler, recorded
    assert summary["phases"]["colocated"]["a"]["host"]["samples"] > 0  # host telemetry of a's own node
