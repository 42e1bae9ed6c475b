"""`rtl_gen.explore`: the space, the front, the cache, errors, and a sweep on
a Ray cluster started as a separate process (``ray start --head``)."""

import json
import os
from pathlib import Path
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from hw.config import SpeqConfig
from rtl_gen import explore


REPO = Path(__file__).resolve().parents[1]


def run(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "rtl_gen.explore", *args], cwd=cwd,
                          capture_output=True, text=True)


def start(*args, cwd=REPO):
    """`run` in the background: `finish` waits for it."""
    return subprocess.Popen([sys.executable, "-m", "rtl_gen.explore", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process):
    stdout, stderr = process.communicate()
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.mark.parametrize("args, message", [
    ((), "required: --target"),
    (("--target", "generic"), "the space is empty"),
    (("--target", "generic", "--rows", "0"), "--rows: 0 is outside 1..16"),
    (("--target", "generic", "--rows", "3-1"), "range '3-1' is empty"),
    (("--target", "generic", "--rows", "x"), "'x' is not an integer"),
    (("--target", "generic", "--rows", "1", "--model", "gpt5"), "unknown preset 'gpt5'"),
    (("--target", "nope", "--rows", "1"), "invalid choice: 'nope'"),
    (("--target", "ulx3s-85f", "--rows", "1", "--mem-gbps", "10"), "fixes its memory"),
    (("--target", "generic", "--rows", "1", "--mem-bits", "17"), "no point of the space"),
    (("--target", "generic", "--rows", "1", "--cols", "1", "--mem-bits", "32"),
     "mem_bits must divide 16 x rows x cols = 16"),
    (("--target", "generic", "--rows", "1", "--points", "0"), "--points: invalid value '0'"),
])
def test_user_errors_are_one_line_and_exit_2(args, message):
    r = run(*args)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("python -m rtl_gen.explore: error:")


def test_parse_values_and_grid():
    assert explore.parse_values("rows", "1,3-5,3") == [1, 3, 4, 5]
    points, invalid = explore.grid({"rows": [1, 2], "mem_bits": [16, 17]}, {"cols": 1})
    assert [(c.rows, c.mem_bits) for c in points] == [(1, 16), (2, 16)]
    assert len(invalid) == 2 and "mem_bits" in invalid[0][1]
    # The accelerator's own refusal, before any tool: 32 bits do not divide 1 x 16.
    points, invalid = explore.grid({"rows": [1, 2], "mem_bits": [32]}, {"cols": 1},
                                   "generic")
    assert [c.rows for c in points] == [2]
    assert "must divide 16 x rows x cols = 16" in invalid[0][1]


def test_pareto_front():
    def row(logic, tps):
        return {"hw": {"logic": logic}, "cost": {"tokens_per_s": tps}}
    rows = [row(100, 5.0), row(200, 4.0), row(300, 9.0), row(150, 7.0), row(400, 9.0),
            {"hw": {"logic": 50}, "cost": None}]
    assert [r["hw"]["logic"] for r in explore.pareto(rows)] == [100, 150, 300]


def test_cache_key_names_what_the_result_depends_on():
    config = SpeqConfig(rows=1, cols=2, mem_bits=16)
    key = explore.cache_key(config, "generic", 1, {"yosys": "1"}, "abc")
    assert key == explore.cache_key(config, "generic", 1, {"yosys": "1"}, "abc")
    others = {explore.cache_key(SpeqConfig(rows=2, cols=2, mem_bits=16), "generic", 1,
                                {"yosys": "1"}, "abc"),
              explore.cache_key(config, "ecp5-85f", 1, {"yosys": "1"}, "abc"),
              explore.cache_key(config, "generic", 2, {"yosys": "1"}, "abc"),
              explore.cache_key(config, "generic", 1, {"yosys": "2"}, "abc"),
              explore.cache_key(config, "generic", 1, {"yosys": "1"}, "abd")}
    assert key not in others and len(others) == 5


def test_build_command_names_what_differs_from_the_default():
    assert explore.build_command(SpeqConfig(rows=2), "generic").endswith(
        "-m rtl_gen.build --top accel --rows 2")
    assert explore.build_command(SpeqConfig(rows=6, cols=6, tmax=8, kmax=256, mem_bits=64,
                                            draft_lanes=1, pe_stages=8), "ulx3s-85f") == \
        "make bitstream BOARD=ulx3s-85f"
    assert explore.build_command(SpeqConfig(rows=2, cols=2, tmax=8, kmax=256, mem_bits=64,
                                            draft_lanes=1, pe_stages=8), "ulx3s-85f") == \
        "make bitstream BOARD=ulx3s-85f BITSTREAM_ARGS='--rows 2 --cols 2'"
    assert explore.build_command(SpeqConfig(rows=6, cols=6, tmax=8, kmax=256, mem_bits=64,
                                            draft_lanes=1), "ulx3s-85f") == \
        "make bitstream BOARD=ulx3s-85f BITSTREAM_ARGS='--pe-stages 10'"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SPACE = ("--target", "generic", "--rows", "1", "--cols", "1", "--mem-bits", "16",
         "--max-parallel", "2")


def _hw(path):
    data = json.loads(Path(path).read_text())
    return {r["label"]: (r["hw"]["logic"], r["hw"]["ff"], r["hw"]["transistors"],
                         r["cost"]["tokens_per_s"]) for r in data["rows"]}, data


def test_sweep_on_a_ray_cluster_equals_the_local_one_and_reruns_from_the_cache(tmp_path):
    """A Ray head as a separate process; the explorer joins it with
    --address; the same sweep on a local Ray gives the same results; a rerun
    is served by the cache and runs no tool; an extended sweep runs only the
    new point; a guided search (on the cluster) reads the cache."""
    # The local sweep runs beside the cluster's: each spends most of its time
    # waiting for Ray to start and stop, and their results meet below.
    local_run = start(*SPACE, "--cache", str(tmp_path / "b"),
                      "--json", str(tmp_path / "local.json"))
    port = _free_port()
    ray = Path(sys.executable).parent / "ray"
    # Short: Ray's socket paths under it must stay within 107 bytes.
    ray_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    head = subprocess.Popen(
        [str(ray), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2", "--block",
         "--include-dashboard=false", "--disable-usage-stats",
         f"--temp-dir={ray_dir}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    try:
        # The head is up when its GCS port answers.
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert head.poll() is None, head.stdout.read()
                assert time.monotonic() < deadline, "ray start --head did not come up"
                time.sleep(1)
        address = f"127.0.0.1:{port}"
        r = run(*SPACE, "--address", address, "--cache", str(tmp_path / "a"),
                "--json", str(tmp_path / "cluster.json"))
        assert r.returncode == 0, r.stderr
        assert f"connecting to the Ray cluster at {address}" in r.stderr
        cluster, data = _hw(tmp_path / "cluster.json")
        assert data["ran"] == 1 and data["cached"] == 0

        # The rerun: nothing built, no Ray, the same table.
        logs = sorted((tmp_path / "a" / "work").rglob("*.log"))
        stamps = [p.stat().st_mtime_ns for p in logs]
        r = run(*SPACE, "--cache", str(tmp_path / "a"), "--json", str(tmp_path / "again.json"))
        assert r.returncode == 0, r.stderr
        assert "all cached: no tool runs" in r.stderr and "Ray" not in r.stderr
        again, data = _hw(tmp_path / "again.json")
        assert data["ran"] == 0 and data["cached"] == 1 and again == cluster
        assert [p.stat().st_mtime_ns for p in sorted((tmp_path / "a" / "work").rglob("*.log"))] \
            == stamps

        # Extending the sweep runs only the new point (on the cluster, which
        # is up already: a local Ray would take as long to start as the point).
        r = run("--target", "generic", "--rows", "1", "--cols", "1,2", "--mem-bits", "16",
                "--max-parallel", "2", "--address", address, "--cache", str(tmp_path / "a"),
                "--json", str(tmp_path / "more.json"))
        assert r.returncode == 0, r.stderr
        more, data = _hw(tmp_path / "more.json")
        assert data["ran"] == 1 and data["cached"] == 1
        assert {k: v for k, v in more.items() if k in cluster} == cluster
        # A guided search (Ray Tune, Optuna's sampler) over the same space,
        # on the cluster: its trials read the cache, and it finds the better
        # of the two points.
        r = run("--target", "generic", "--rows", "1", "--cols", "1,2", "--mem-bits", "16",
                "--max-parallel", "2", "--address", address, "--cache", str(tmp_path / "a"),
                "--sample", "guided", "--points", "4", "--json", str(tmp_path / "guided.json"))
        assert r.returncode == 0, r.stderr
        assert "guided search: 4 trials" in r.stderr
        assert f"connecting to the Ray cluster at {address}" in r.stderr
        guided, data = _hw(tmp_path / "guided.json")
        assert guided and all(more[label] == value for label, value in guided.items()), r.stderr
        best = max(more, key=lambda label: more[label][3])
        assert best in guided and data["best"]["config"]["cols"] == int(best.split("cols=")[1][0])
    finally:
        # SIGTERM to `ray start` alone: it drains the node and stops the
        # processes it started (2 s). Sent to the whole group, it reached the
        # GCS first, and `ray start` then waited 30 s for the GCS to answer
        # its drain request. Whatever is left after that is killed.
        if head.poll() is None:
            head.send_signal(signal.SIGTERM)
            try:
                head.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(head.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        head.wait()
        shutil.rmtree(ray_dir, ignore_errors=True)
        if sys.exc_info()[0] is not None:
            finish(local_run)       # nothing left running after a failure

    r = finish(local_run)
    assert r.returncode == 0, r.stderr
    assert "starting a local Ray instance" in r.stderr
    local, data = _hw(tmp_path / "local.json")
    assert data["ran"] == 1
    assert local == cluster
    assert all(cells > 1000 for cells, *_ in local.values())



def test_a_point_past_its_timeout_is_killed_and_recorded(tmp_path):
    config = SpeqConfig(rows=1, cols=1, mem_bits=16)
    spec = explore._spec(config, "generic", 1, tmp_path, "k")
    start = time.monotonic()
    hw = explore._evaluate(spec, timeout=2)
    assert hw["status"] == "timeout" and "timed out after 2 s" in hw["reason"]
    assert time.monotonic() - start < 30
    assert not Path(spec["result"]).exists()
    # Nothing of the point's session is left running.
    left = subprocess.run(["pgrep", "-f", spec["workdir"]], capture_output=True, text=True)
    assert left.stdout.strip() == ""


def test_a_sweep_whose_every_point_fails_exits_1(tmp_path):
    # Every point past its timeout: the table says so, and so does the exit
    # status (a script running the sweep must not take it for a result).
    r = run("--target", "generic", "--rows", "1", "--cols", "2", "--mem-bits", "32",
            "--timeout-per-point", "1", "--max-parallel", "1", "--cache", str(tmp_path))
    assert r.returncode == 1, r.stderr
    assert "timed out after 1 s" in r.stdout
    assert r.stderr.strip().splitlines()[-1] == \
        "python -m rtl_gen.explore: error: no point of the sweep gave figures: 1 timeout"
