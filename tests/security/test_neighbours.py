"""Noisy neighbours: a function's CPU weight follows its memory, whatever number of instances (cgroups) it
runs, and one function's instances cannot reserve more than their share of the node's memory budget."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..e2e.conftest import Server, start_server, wait_until
from .conftest import require


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(Path(tmp_path_factory.mktemp("polyfn-neighbours")),
                     env={"POLYFN_MEMORY_BUDGET": "2048", "POLYFN_FUNCTION_MEMORY_SHARE": "50"})
    yield s
    s.stop()


def cpu_weight(pid: int) -> tuple[str, int] | None:
    """(cgroup, CPU weight in cpu.shares units) of a process, from /proc and the cgroup files."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            d = Path("/sys/fs/cgroup", controllers, path.lstrip("/"))
            if not d.is_dir():
                d = Path("/sys/fs/cgroup/cpu", path.lstrip("/"))
            return str(d), int((d / "cpu.shares").read_text())
    for line in lines:  # cgroup v2: cpu.weight is shares × 100 / 1024
        if line.startswith("0::"):
            d = Path("/sys/fs/cgroup", line[3:].lstrip("/"))
            return str(d), int((d / "cpu.weight").read_text()) * 1024 // 100
    return None


def test_a_functions_cpu_weight_does_not_grow_with_its_instances(node: Server) -> None:
    require(node, "cgroup")
    node.deploy("spread", {"handler.py": "import time\ndef handler(event, context):\n    time.sleep(3)\n"
                                         "    return 'ok'\n"}, memory=256)
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        calls = [ex.submit(node.http.get, "/fn/spread") for _ in range(4)]  # four instances, cold: four cgroups
        assert wait_until(lambda: sum(i["inflight"] for i in node.api.get(
            "/v1/functions/spread/instances").json()["instances"]) == 4, 20)
        pids = [i["pid"] for i in node.api.get("/v1/functions/spread/instances").json()["instances"]]
        weights = dict(w for w in map(cpu_weight, pids) if w is not None)
        assert all(c.result().status_code == 200 for c in calls)
    assert len(weights) >= 2, weights  # (else there is nothing to split)
    # 256 split evenly over the function's cgroups (these, and its function zygote's if it has one by now);
    # before: 256 each, so the more instances, the more CPU
    (each,) = set(weights.values())
    assert each in (256 // len(weights), 256 // (len(weights) + 1)), weights
    assert sum(weights.values()) <= 256, weights


def test_one_function_cannot_reserve_more_than_its_share_of_the_budget(node: Server) -> None:
    """2 GB budget, 50 % share: 4 instances of 256 MB at most, however many callers wait (they are served
    as instances free up, or refused), and the other functions keep their room."""
    node.deploy("greedy", {"handler.py": "import time\ndef handler(event, context):\n    time.sleep(1)\n"
                                         "    return 'ok'\n"}, memory=256, max_instances=10)
    node.deploy("other", {"handler.py": "def handler(event, context):\n    return 'fine'\n"}, memory=256)
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        calls = [ex.submit(node.http.get, "/fn/greedy") for _ in range(8)]
        seen = []
        for _ in range(10):
            seen.append(len(node.api.get("/v1/functions/greedy/instances").json()["instances"]))
            assert node.http.get("/fn/other").text == "fine"
        codes = [c.result().status_code for c in calls]
    assert max(seen) <= 4, seen
    assert codes.count(200) >= 4 and set(codes) <= {200, 429, 503}, codes
