"""mu core: real worker processes over real TLS on 127.0.0.1, driven by coroutine machines."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from excamera.mu.backends import InProcessBackend, LocalBackend
from excamera.mu.coordinator import Coordinator
from excamera.mu.errors import JobFailed
from excamera.mu.machines import Cmd, JobContext, Transition, WorkerHandle
from excamera.mu.observe import JsonLinesRecorder
from excamera.mu.timeline import load_transitions, plot_timeline

PYTHON_DIR = Path(__file__).resolve().parent.parent / "python"


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PYTHON_DIR) + os.pathsep + env.get("PYTHONPATH", "")
    return env


async def feature_machine(w: WorkerHandle, ctx: JobContext) -> dict:
    """Pipelined commands, a loop, if/else, a wait on another worker, a background command."""
    w.state = "setup"
    # A mu-style command list, pipelined: all four commands are in flight at once.
    replies = await w.command_list([
        Cmd.set("NAME", f"w{w.id}"),
        Cmd.set("COUNT", 3),
        Cmd.get("NAME"),
        Cmd.run("printf '%s' ##NAME##-##COUNT##"),
    ])
    assert replies[2]["value"] == f"w{w.id}"
    tag = replies[3]["stdout"]
    # ##TMPDIR## is the worker's own directory, also its working directory.
    where = await w.run("printf '%s|' ##TMPDIR## && pwd")
    tmpdir, cwd = where.stdout.strip().split("|")
    # A loop over plain Python.
    lines = []
    for i in range(3):
        w.state = f"loop{i}"
        lines.append((await w.run(f"echo {i} >> log.txt && wc -l < log.txt")).stdout.strip())
    # if/else on a worker's answer. Worker 0 reaches phase1_done only after worker 1 has, so
    # worker 1's wait for worker 0 below is a real wait, however fast or loaded the machine.
    if w.id == 0:
        await ctx.progress.wait_for(worker=1, state="phase1_done")
        branch = "waited"
    else:
        branch = "went on"
    w.state = "phase1_done"
    if w.id > 0:
        await ctx.progress.wait_for(worker=w.id - 1, state="phase1_done")
    w.state = "after_wait"
    # Background command: the worker keeps answering while it runs, then reports an event. The
    # command cannot end before the file `go` exists, which is made only after the echo is
    # answered, so the echo was answered while it ran (a worker that served one command at a
    # time would never answer: the 60 s bound turns that hang into a failure).
    bg = await w.start(Cmd.run("while [ ! -e go ]; do sleep 0.01; done; echo went"))
    echo = await asyncio.wait_for(w.echo("ping", b"body"), 60)
    still_running = not bg.done()
    await w.run("touch go")
    done = await bg.result()
    return {
        "tag": tag, "tmpdir": tmpdir, "cwd": cwd, "lines": lines, "branch": branch,
        "echo": (echo["text"], echo.body), "bg_running_at_echo": still_running,
        "bg_out": done["stdout"].strip(),
    }


def test_machine_features_and_transitions(tmp_path: Path) -> None:
    out = tmp_path / "states.jsonl"
    root = tmp_path / "workers"
    recorder = JsonLinesRecorder(out)
    coord = Coordinator("features", 3, LocalBackend(tmp_root=root), "", feature_machine,
                        observers=[recorder], connect_timeout=30)
    result = asyncio.run(coord.run())
    recorder.close()

    for k in range(3):
        o = result.outputs[k]
        assert o["tag"] == f"w{k}-3"
        assert o["tmpdir"] == o["cwd"]
        assert o["tmpdir"].startswith(str(root))  # the backend's per-worker TMPDIR
        assert o["lines"] == ["1", "2", "3"]
        assert o["branch"] == ("waited" if k == 0 else "went on")
        assert o["echo"] == ("ping", b"body")
        assert o["bg_running_at_echo"] and o["bg_out"] == "went"
        assert result.workers[k].final_state == "done"
        assert not Path(o["tmpdir"]).exists()
    assert list(root.iterdir()) == []  # every worker's directory is gone

    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["worker"] for r in recs} == {0, 1, 2}
    ts = [r["t"] for r in recs]
    assert ts == sorted(ts)
    for k in range(3):
        states = [r["state"] for r in recs if r["worker"] == k]
        assert states == ["launching", "connected", "setup", "loop0", "loop1", "loop2",
                          "phase1_done", "after_wait", "done"]
    at = {(r["worker"], r["state"]): i for i, r in enumerate(recs)}  # order of the records
    for k in (1, 2):
        # The wait really waited: worker k went on only after worker k-1 reached phase1_done.
        assert at[(k, "after_wait")] > at[(k - 1, "phase1_done")]
    # Worker 1 was at phase1_done before worker 0 got there, and went on only after.
    assert at[(1, "phase1_done")] < at[(0, "phase1_done")] < at[(1, "after_wait")]

    # The timeline of this real run: one bar row per worker, a valid non-trivial PNG.
    png = tmp_path / "timeline.png"
    fig = plot_timeline(load_transitions(out), png)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    rows = {round(p.get_y() + p.get_height() / 2) for p in fig.axes[0].patches}
    assert rows == {0, 1, 2}
    cli = subprocess.run([sys.executable, "-m", "excamera.cli", "timeline", str(out), "-o",
                          str(tmp_path / "cli.png")], env=child_env(), capture_output=True,
                         text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    assert "3 workers" in cli.stdout
    assert (tmp_path / "cli.png").read_bytes()[:4] == b"\x89PNG"


class TransitionList:
    """An observer keeping every transition, in order."""

    def __init__(self) -> None:
        self.transitions: list[Transition] = []

    def on_transition(self, tr: Transition) -> None:
        self.transitions.append(tr)

    def states(self, worker: int) -> list[str]:
        return [tr.state for tr in self.transitions if tr.worker == worker]


def alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a killed orphan may linger as a zombie until its
    new parent reaps it; that does not count)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def test_failing_command_reports_stderr(tmp_path: Path) -> None:
    pids: dict[int, int] = {}

    async def failing_machine(w: WorkerHandle, ctx: JobContext) -> None:
        pids[w.id] = w.pid
        w.state = "about_to_fail"
        if w.id == 1:
            # only once worker 0 is in its sleep, which the failure must then cut short (a
            # loaded machine may start worker 0 after worker 1 has failed already)
            await ctx.progress.wait_for(0, "about_to_fail")
            await w.run("echo first line >&2; echo 'decoder exploded at frame 7' >&2; exit 3")
        else:
            await w.run_op("sleep", seconds=60)
            w.state = "slept"

    seen = TransitionList()
    coord = Coordinator("failing", 2, LocalBackend(tmp_root=tmp_path), "", failing_machine,
                        observers=[seen])
    with pytest.raises(JobFailed) as info:
        asyncio.run(coord.run())
    # The other worker was stopped, not waited for: its sleep never ended, and its process
    # is gone.
    assert "about_to_fail" in seen.states(0) and "slept" not in seen.states(0)
    assert not alive(pids[0])
    msg = str(info.value)
    assert "worker 1" in msg and "exited with 3" in msg
    assert "decoder exploded at frame 7" in msg
    assert "'about_to_fail'" in msg
    assert [f.worker for f in info.value.failures] == [1]
    assert list(tmp_path.iterdir()) == []


def test_unknown_template_and_operation_fail_clearly(tmp_path: Path) -> None:
    async def machine(w: WorkerHandle, ctx: JobContext) -> list[str]:
        msgs = []
        for cmd in (Cmd.run("echo ##NOPE##"), Cmd.op_("no_such_op"), Cmd.retrieve("k", "x")):
            try:
                await w.call(cmd)
            except Exception as exc:  # noqa: BLE001 - we check the message
                msgs.append(str(exc))
        return msgs

    coord = Coordinator("tmpl", 1, LocalBackend(tmp_root=tmp_path), "", machine)
    msgs = asyncio.run(coord.run()).outputs[0]
    assert "unknown template variable ##NOPE##" in msgs[0]
    assert "unknown operation 'no_such_op'" in msgs[1]
    assert "without a storage URL" in msgs[2]


async def relay_machine(w: WorkerHandle, ctx: JobContext) -> str:
    peer = 1 - w.id
    await w.connect(peer)
    if w.id == 0:
        await w.run_op("write_text", path="state.bin", text="state of chunk 0")
        await w.send_blob(file="state.bin")
        return "sent"
    await w.recv_blob(file="got.bin", sender=0)
    data = (await w.run_op("read_text", path="got.bin"))["text"]
    await w.send_blob(data=b"ack")
    return data


def test_relay_blobs_between_workers(tmp_path: Path) -> None:
    coord = Coordinator("relay", 2, LocalBackend(tmp_root=tmp_path), "", relay_machine,
                        embedded_relay=True)
    result = asyncio.run(coord.run())
    assert result.outputs == {0: "sent", 1: "state of chunk 0"}


def children(pid: int, program: bytes) -> list[int]:
    """The processes whose parent is ``pid`` and whose command is ``program``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argv0 = (entry / "cmdline").read_bytes().split(b"\0")[0]
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if ppid == pid and argv0 == program:
            found.append(int(entry.name))
    return found


def run_slow_job(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess, Path]:
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    root = tmp_path / "tmproot"
    states = tmp_path / "states.jsonl"
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "mu_test_job.py"), "-n", "4", "-t", "0",
         "--pid-dir", str(pid_dir), "--tmp-root", str(root), "-O", str(states), *extra],
        env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    pid_file = pid_dir / "worker-2.pid"
    deadline = time.monotonic() + 60
    # Kill worker 2 once its slow command is running: when its `sleep` child exists.
    while not pid_file.exists() or not pid_file.read_text() or not children(
            int(pid_file.read_text()), b"sleep"):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "worker 2 never reached its slow command"
        time.sleep(0.05)
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), root


def test_killed_worker_fails_job(tmp_path: Path) -> None:
    done, root = run_slow_job(tmp_path)
    assert done.returncode != 0
    err = done.stderr
    assert "worker 2 (attempt 0) failed in state 'slow'" in err
    assert "connection" in err and "exited with code -9" in err
    assert "run: sleep 3" in err  # the tail of the worker's own stderr
    assert "outputs are incomplete" in err
    assert "ok [" not in done.stdout
    assert list(root.iterdir()) == []  # even the SIGKILLed worker's directory is gone


def test_killed_worker_retried_succeeds(tmp_path: Path) -> None:
    done, root = run_slow_job(tmp_path, "--retries", "1")
    assert done.returncode == 0, done.stderr
    assert "ok [0, 1, 2, 3]" in done.stdout
    recs = [json.loads(line) for line in (tmp_path / "states.jsonl").read_text().splitlines()]
    assert "cost" in recs.pop()  # recorded after the transitions
    w2 = [(r["attempt"], r["state"]) for r in recs if r["worker"] == 2]
    assert (0, "lost") in w2 and (1, "done") in w2
    assert list(root.iterdir()) == []


def test_worker_that_never_connects(tmp_path: Path) -> None:
    async def machine(w: WorkerHandle, ctx: JobContext) -> None:
        raise AssertionError("never reached")

    # Each stuck worker notes its process id, then would note that it woke after 60 s.
    marks = tmp_path / "marks"
    marks.mkdir()
    backend = LocalBackend(
        tmp_root=tmp_path / "tmp",
        command=[sys.executable, "-c", "import os, sys, time; sys.stdin.read(); "
                 f"d = {str(marks)!r}; open(os.path.join(d, str(os.getpid())), 'w').close(); "
                 "print('stuck in cold start', file=sys.stderr, flush=True); time.sleep(60); "
                 "open(os.path.join(d, 'woke'), 'w').close()"],
    )
    coord = Coordinator("silent", 2, backend, "", machine, connect_timeout=1.5)
    with pytest.raises(JobFailed) as info:
        asyncio.run(coord.run())
    # The job gave up on them instead of waiting: none woke, and their processes are gone.
    pids = [int(p.name) for p in marks.iterdir() if p.name != "woke"]
    assert pids and not (marks / "woke").exists()
    assert not any(alive(pid) for pid in pids)
    msg = str(info.value)
    assert "did not connect within 1.5 s" in msg
    assert "stuck in cold start" in msg
    assert {f.worker for f in info.value.failures} <= {0, 1}


def test_command_timeout_loses_worker(tmp_path: Path) -> None:
    pid_file, finished = tmp_path / "command.pid", tmp_path / "finished"

    async def machine(w: WorkerHandle, ctx: JobContext) -> None:
        w.state = "hanging"
        await w.run(f"echo $$ > {pid_file}; sleep 60; touch {finished}")

    coord = Coordinator("hang", 1, LocalBackend(tmp_root=tmp_path / "tmp"), "", machine,
                        command_timeout=1.0)
    with pytest.raises(JobFailed) as info:
        asyncio.run(coord.run())
    # The command was stopped at its timeout, not waited for.
    assert not finished.exists() and not alive(int(pid_file.read_text()))
    assert "command 'run' timed out after 1 s" in str(info.value)
    assert "'hanging'" in str(info.value)


def test_scale_in_process_workers() -> None:
    n = 300
    seen: dict[str, int] = {}

    async def machine(w: WorkerHandle, ctx: JobContext) -> int:
        w.state = "ready"
        await w.command_list([Cmd.set("X", w.id), Cmd.get("X"), Cmd.echo("hi")])
        if w.id == 0:
            for k in range(ctx.n_workers):
                await ctx.progress.wait_for(k, "ready")
            # All 300 workers and their connections are live now.
            seen["threads"] = threading.active_count()
        await w.run_op("sleep", seconds=0.01)
        w.state = "worked"
        return int(await w.get("X"))

    before = threading.active_count()
    coord = Coordinator("scale", n, InProcessBackend(), "", machine, connect_timeout=60)
    t0 = time.monotonic()
    result = asyncio.run(coord.run())
    elapsed = time.monotonic() - t0
    assert result.outputs == {k: k for k in range(n)}
    assert all(w.final_state == "done" for w in result.workers.values())
    assert seen["threads"] <= before + 2  # no thread per worker (at most a helper or two)
    print(f"scale: {n} workers in {elapsed:.2f} s")


def test_long_lived_ca_issues_job_intermediate(tmp_path: Path) -> None:
    """-c/-s/-k (+ ca_key.pem beside the CA): workers get certs under a per-job intermediate."""
    from excamera.mu import tls

    keys = tls.genkeys(tmp_path / "keys")

    async def machine(w: WorkerHandle, ctx: JobContext) -> str:
        return (await w.echo("hello")).get("text")

    coord = Coordinator("ca", 2, LocalBackend(tmp_root=tmp_path / "tmp"), "", machine,
                        ca_cert=keys["ca_cert"], server_cert=keys["server_cert"],
                        server_key=keys["server_key"])
    assert asyncio.run(coord.run()).outputs == {0: "hello", 1: "hello"}
    assert coord._authority is not None and not coord._authority.is_root
    # Without the CA key nothing can be issued: a clear TLS setup failure, not a hang.
    (tmp_path / "keys" / "ca_key.pem").unlink()
    coord = Coordinator("ca", 1, LocalBackend(tmp_root=tmp_path / "tmp"), "", machine,
                        ca_cert=keys["ca_cert"])
    with pytest.raises(JobFailed, match="TLS setup failed: .*needs its key"):
        asyncio.run(coord.run())


def test_timeline_colours_by_phase() -> None:
    """Per-pass states share their phase's colour (and legend entry), as in ExCamera's plots."""
    from excamera.mu.timeline import phase_of

    assert [phase_of(s) for s in ("reencode_p1", "reencode_p12", "sent_s0", "pass0", "xcdump")] \
        == ["reencode", "reencode", "sent", "pass0", "xcdump"]
    trs = [Transition(0, 0, s, t) for t, s in enumerate(
        ["setup", "reencode_p1", "wait_state_p2", "reencode_p2", "done"])]
    fig = plot_timeline(trs)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["setup", "reencode", "wait_state"]
