"""Resource quantities as the local node reads them, and the cgroup settings, command line and
layout it derives from a container's spec (no kernel involved: the enforcement itself is tested
on the cluster, tests/cluster/test_node_limits.py)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from devcluster.node.cgroups import (
    DEFAULT_POD_PIDS,
    CgroupError,
    ContainerCgroup,
    Limits,
    NodeCgroups,
    Usage,
    cfs_quota,
    cpu_shares,
    own_groups,
    pod_pids_limit,
    remove_tree,
)
from devcluster.node.quantity import cpu_millis, memory_bytes, quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("512Mi", 512 * 2**20),
        ("1G", 10**9),
        ("0.5Gi", 2**29),
        ("128974848", 128974848),
        ("129e6", 129 * 10**6),
        ("129M", 129 * 10**6),
        ("123Ki", 123 * 1024),
        ("1.5Ti", 3 * 2**39),
        ("2Pi", 2 * 2**50),
        ("1E", 10**18),
        ("1Ei", 2**60),
        ("100k", 100_000),
        (".5Mi", 2**19),
        ("1e-3", Decimal("0.001")),
    ],
)
def test_quantities_use_the_suffixes_kubernetes_defines(text: str, value: int) -> None:
    assert quantity(text) == value


@pytest.mark.parametrize("text", ["", "Mi", "1 Mi", "1mi", "1KB", "one", "1Gi2", "--1", "1e"])
def test_a_malformed_quantity_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a resource quantity"):
        quantity(text)


def test_memory_rounds_up_to_bytes_and_cpu_to_millicores() -> None:
    assert memory_bytes("1.5") == 2
    assert memory_bytes("0.1Ki") == 103
    assert cpu_millis("500m") == 500
    assert cpu_millis("0.5") == 500
    assert cpu_millis("2") == 2000
    assert cpu_millis("1.0001") == 1001
    assert cpu_millis("100u") == 1


def test_cpu_limits_become_a_cfs_quota_and_requests_shares_as_the_kubelet_computes_them() -> None:
    assert cfs_quota(200) == 20_000  # µs per 100 ms period
    assert cfs_quota(2000) == 200_000
    assert cfs_quota(1) == 1000, "never below 1 ms"
    assert cpu_shares(100) == 102
    assert cpu_shares(1000) == 1024
    assert cpu_shares(0) == 2
    assert cpu_shares(10**6) == 262144


def test_a_containers_limits_are_written_per_controller() -> None:
    spec = {"resources": {"limits": {"memory": "128Mi", "cpu": "200m"}, "requests": {"cpu": "0.1"}}}
    assert Limits.of(spec) == Limits(memory=128 * 2**20, cpu=200, cpu_request=100)
    assert Limits.of(spec).files() == {
        "memory": {"memory.limit_in_bytes": str(128 * 2**20)},
        "pids": {},
        "cpu": {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "20000", "cpu.shares": "102"},
    }
    # Without a CPU limit the container stays out of the cpu hierarchy; without any limits it
    # still gets memory and pids groups (its pod's pids limit, its usage, its cleanup).
    assert Limits.of({"resources": {"requests": {"cpu": "1"}}}).files() == {
        "memory": {},
        "pids": {},
    }
    assert Limits.of({}).files() == {"memory": {}, "pids": {}}
    only_limit = Limits.of({"resources": {"limits": {"cpu": "2"}}})
    assert only_limit.files()["cpu"]["cpu.shares"] == "2048", "the request defaults to the limit"


def test_the_pids_limit_per_pod_defaults_and_can_be_changed_or_lifted() -> None:
    assert pod_pids_limit({}) == DEFAULT_POD_PIDS == 4096
    assert pod_pids_limit({"FLYWHEEL_NODE_POD_PIDS_LIMIT": "64"}) == 64
    assert pod_pids_limit({"FLYWHEEL_NODE_POD_PIDS_LIMIT": "0"}) is None
    assert pod_pids_limit({"FLYWHEEL_NODE_POD_PIDS_LIMIT": "max"}) is None


def test_the_container_joins_its_groups_before_its_command_runs() -> None:
    group = ContainerCgroup(
        {"memory": Path("/cg/memory/flywheel/3/uid/main-0"), "pids": Path("/cg/pids/x")}
    )
    argv = ["nsenter", "--", "chroot", "/root", "python", "-c", "print(1)"]
    wrapped = group.wrap(argv)
    assert wrapped[:2] == ["/bin/sh", "-c"]
    assert wrapped[3:] == [
        "cgroup-join",
        "/cg/memory/flywheel/3/uid/main-0/cgroup.procs",
        "/cg/pids/x/cgroup.procs",
        "--",
        *argv,
    ]
    assert 'echo $$ > "$1"' in wrapped[2]
    assert 'exec "$@"' in wrapped[2], "the same pid becomes the container's process"
    assert ContainerCgroup().wrap(argv) == argv, "no groups (no cgroup v1): unchanged"


def test_a_clusters_groups_nest_under_the_agents_own_per_slot_and_pod(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "mountinfo").write_text(
        "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
        f"32 31 0:29 / {tmp_path}/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
        f"35 31 0:32 / {tmp_path}/memory rw,relatime - cgroup cgroup rw,memory\n"
        f"39 31 0:36 /outer {tmp_path}/pids rw,relatime - cgroup cgroup rw,pids\n"
        f"41 31 0:38 / {tmp_path}/unified rw,relatime - cgroup2 cgroup2 rw\n"
    )
    (proc / "cgroup").write_text(
        "8:pids:/outer/inner\n4:memory:/process_api/abc\n1:cpu,cpuacct:/\n0::/\n"
    )
    for directory in ("cpu,cpuacct", "memory/process_api/abc", "pids/inner"):
        (tmp_path / directory).mkdir(parents=True)
    groups = own_groups(proc)
    assert groups == {
        "cpu": tmp_path / "cpu,cpuacct",
        "memory": tmp_path / "memory/process_api/abc",
        "pids": tmp_path / "pids/inner",
    }
    node = NodeCgroups(3, None, groups=groups)
    pod = node.pod("uid-1")
    assert pod.groups["memory"] == tmp_path / "memory/process_api/abc/flywheel/3/uid-1"
    assert NodeCgroups.disabled().pod("uid-1").groups == {}


def test_only_groups_flywheel_created_are_ever_removed(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="did not create"):
        remove_tree(tmp_path / "memory" / "someone-else")
    assert remove_tree(tmp_path / "flywheel" / "3" / "gone"), "nothing there: nothing to do"


def test_usage_is_logged_with_the_limits() -> None:
    usage = Usage(oom_kills=1, peak_bytes=130 * 2**20, charged_bytes=2**20, throttled=12)
    line = usage.describe(Limits(memory=128 * 2**20, cpu=200))
    assert line == (
        "peak memory 130 MiB (limit 128 MiB; 1 MiB, mostly page cache, still charged at exit), "
        "throttled in 12 periods (limit 200m), 1 OOM kill(s)"
    )


def test_a_pod_torn_down_while_a_container_starts_gets_no_new_group(tmp_path: Path) -> None:
    pod = NodeCgroups(3, None, groups={"memory": tmp_path / "memory"}).pod("uid-1")
    (tmp_path / "memory" / "flywheel" / "3").mkdir(parents=True)
    pod.removed = True
    with pytest.raises(CgroupError, match="being removed"):
        pod.container("main-0", {})
