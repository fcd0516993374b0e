"""The Lambda deployment package: contents, limits, ELF policy, determinism, vpxenc, handler.

The zip is the real one ``excamera lambda build`` makes (built once per session, lambda_fixtures).
Its ELF checks are compared with binutils' readelf, an independent reader; its static vpxenc
with Debian's /usr/bin/vpxenc; and its handler runs under AWS's own runtime interface client
(awslambdaric) in a clean CPython 3.12 whose only paths are the unpacked zip and awslambdaric,
fed by a minimal Runtime API (below) that stands in for Lambda's.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from _shared_paths import shared_dir
from excamera import identity
from excamera.awslambda import build, elf
from excamera.awslambda.deploy import CODE_FILE, HANDLER
from excamera.errors import CommandError
from excamera.mu.backends.base import Backend, WorkerProcess
from excamera.mu.coordinator import Coordinator
from excamera.mu.errors import JobFailed
from excamera.mu.machines import JobContext, WorkerHandle
from excamera.mu.payload import LaunchPayload
from excamera.pipelines.xcenc.ops import OPERATION_MODULE
from excamera.pipelines.xcenc.plan import VPXENC_SETTINGS  # mu's pass-0 settings

REPO = Path(__file__).resolve().parents[1]
SYSTEM_VPXENC = Path("/usr/bin/vpxenc")


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "excamera.cli", *args], capture_output=True,
                          text=True, timeout=600, cwd=cwd)


def zip_modes(path: Path) -> dict[str, int]:
    with zipfile.ZipFile(path) as zf:
        return {i.filename: i.external_attr >> 16 for i in zf.infolist()}


# --- contents, sizes, modes -------------------------------------------------------------------


def test_zip_contents_sizes_and_modes(lambda_build) -> None:
    path = lambda_build.path
    assert path.stat().st_size == lambda_build.zipped <= build.MAX_ZIPPED
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        assert zf.testzip() is None
        unzipped = sum(i.file_size for i in infos)
        manifest = json.loads(zf.read(build.MANIFEST))
        code = json.loads(zf.read(CODE_FILE))
    assert unzipped == lambda_build.unzipped <= build.MAX_UNZIPPED
    names = [i.filename for i in infos]
    assert names == sorted(names) and len(set(names)) == len(names)

    # The worker's code and its dependencies, nothing the coordinator alone needs.
    for need in ("excamera/awslambda/handler.py", "excamera/_xc.abi3.so",
                 "excamera/mu/worker.py", "numpy/__init__.py", "png.py", "boto3/__init__.py",
                 "cryptography/__init__.py", "bin/vpxenc"):
        assert need in names, need
    tops = {n.split("/")[0] for n in names}
    assert not tops & {"av", "matplotlib", "rich", "PIL", "moto", "pytest"}
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert [n for n in names if n.startswith("bin/")] == ["bin/vpxenc"]
    # maturin stamps its SBOM with a time and a random serial: left out (cryptography's is fixed).
    assert not [n for n in names if n.startswith("excamera-") and "/sboms/" in n]

    # Unix regular files, 0755 for executables and 0644 for the rest; vpxenc executable.
    for info in infos:
        assert info.create_system == 3, info.filename
        assert info.date_time == build.ZIP_TIME, info.filename
        assert (info.external_attr >> 16) in (0o100755, 0o100644), info.filename
    modes = zip_modes(path)
    assert modes["bin/vpxenc"] == 0o100755
    assert modes["excamera/awslambda/handler.py"] == 0o100644

    # The zip's code is this checkout's: a coordinator run from here accepts its workers.
    assert code == identity.code_identity()
    assert manifest["handler"] == HANDLER
    assert manifest["runtime"] == "python3.12"
    assert manifest["vpxenc"]["source"].startswith("libvpx 1.12.0-1+deb12u")
    assert "CVE-2026-2447.patch" in manifest["vpxenc"]["debian_patches"]
    with zipfile.ZipFile(path) as zf:
        assert manifest["vpxenc"]["sha256"] == hashlib.sha256(zf.read("bin/vpxenc")).hexdigest()


def test_task_root_keeps_modes(lambda_task_root: Path) -> None:
    vpxenc = lambda_task_root / "bin" / "vpxenc"
    assert os.access(vpxenc, os.X_OK)
    assert (lambda_task_root / "excamera" / "cli.py").stat().st_mode & 0o777 == 0o644


# --- every ELF loads on Lambda's runtime, checked with readelf ---------------------------------


def _readelf(path: Path) -> tuple[list[str], list[str], set[tuple[str, str]]]:
    """NEEDED, RPATH+RUNPATH and (library, version) requirements as binutils reads them."""
    dyn = subprocess.run(["readelf", "-dW", str(path)], capture_output=True, text=True,
                         check=True).stdout
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.*)\]", dyn)
    paths = re.findall(r"\((?:RPATH|RUNPATH)\)\s+Library r(?:un)?path: \[(.*)\]", dyn)
    ver = subprocess.run(["readelf", "-VW", str(path)], capture_output=True, text=True,
                         check=True).stdout
    needs: set[tuple[str, str]] = set()
    lib = ""
    for line in ver.partition("Version needs section")[2].splitlines():
        if m := re.search(r"File: (\S+)", line):
            lib = m.group(1)
        elif m := re.search(r"Name: (\S+)", line):
            needs.add((lib, m.group(1)))
    return needed, paths, needs


def test_every_elf_needs_glibc_234_at_most_and_resolves(lambda_task_root: Path) -> None:
    if shutil.which("readelf") is None:
        pytest.fail("readelf (binutils) is needed to check the ELF reader independently")
    files = sorted(p for p in lambda_task_root.rglob("*") if p.is_file())
    elves = [p for p in files if p.read_bytes()[:4] == b"\x7fELF"]
    assert len(elves) >= 20  # the extension, numpy's, cryptography's, cffi's, vpxenc
    shipped_names = {p.name for p in files}
    newest = (0, 0)
    for p in elves:
        rel = p.relative_to(lambda_task_root).as_posix()
        needed, paths, needs = _readelf(p)
        info = elf.read_elf(p.read_bytes(), rel)
        # Our reader agrees with binutils' on everything the policy uses.
        assert info.needed == needed, rel
        assert (info.rpath or info.runpath) == [e for ps in paths for e in ps.split(":") if e]
        assert {(n.library, n.version) for n in info.version_needs} == needs, rel
        for _lib, version in needs:
            if version.startswith("GLIBC_2."):
                v = tuple(int(x) for x in version[6:].split("."))
                assert v <= (2, 34), f"{rel} needs {version}"
                newest = max(newest, v)
        # Every library is the runtime's or shipped (where exactly the loader finds it is
        # test_library_resolution_matches_the_loader's business).
        assert set(needed) <= elf.RUNTIME_LIBRARIES | shipped_names, rel
    # Everything is manylinux2014, well within AL2023's 2.34: the extension (excamera.wheel
    # links it against glibc 2.17) and the pinned dependencies.
    assert newest == (2, 17)
    vpx_needed, _, vpx_needs = _readelf(lambda_task_root / "bin" / "vpxenc")
    assert vpx_needed == [] and vpx_needs == set()  # static: no loader, no libraries


def _fail_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    return lines[-1] if lines else ""


def test_build_refuses_elf_needing_newer_glibc(tmp_path: Path, lambda_build) -> None:
    # A real program from this machine's compiler: arc4random is new in glibc 2.36.
    src = tmp_path / "t36.c"
    src.write_text("#include <stdio.h>\n#include <stdlib.h>\n"
                   "int main(void) { printf(\"%u\\n\", arc4random()); return 0; }\n")
    exe = tmp_path / "t36"
    subprocess.run(["gcc", "-O1", "-o", str(exe), str(src)], check=True)
    out = tmp_path / "refused.zip"
    proc = cli("lambda", "build", "-o", str(out), "--vpxenc", str(exe))
    assert proc.returncode == 1
    line = _fail_line(proc)
    assert line.startswith("excamera lambda: error: refusing the package: bin/vpxenc: needs"
                           " GLIBC_2.36 from libc.so.6 (symbol arc4random)"), line
    assert "glibc 2.34" in line and "Traceback" not in proc.stderr
    assert not out.exists() and not list(tmp_path.glob(".refused.zip.*"))


def test_build_options_are_checked(tmp_path: Path) -> None:
    bogus = tmp_path / "excamera-0.1.0-cp311-abi3-macosx_11_0_arm64.whl"
    bogus.write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip, for the wrong platform
    for args, want in [
        (["--wheel", str(tmp_path / "none.whl")], f"{tmp_path / 'none.whl'}: no such file"),
        (["--wheel", str(bogus)], f"{bogus.name}: not a wheel for CPython 3.12 on manylinux"
                                  " x86_64"),
        (["--vpxenc", str(tmp_path)], f"{tmp_path}: not a file"),
    ]:
        proc = cli("lambda", "build", "-o", str(tmp_path / "x.zip"), *args)
        assert proc.returncode == 1, proc.stderr
        assert _fail_line(proc) == f"excamera lambda: error: {want}"
        assert "Traceback" not in proc.stderr
    assert not (tmp_path / "x.zip").exists()


def test_refuses_libraries_the_runtime_lacks(tmp_path: Path) -> None:
    src = tmp_path / "hello.cc"
    src.write_text("#include <iostream>\nint main() { std::cout << \"hi\" << std::endl; }\n")
    cxx = tmp_path / "hello"
    subprocess.run(["g++", "-o", str(cxx), str(src)], check=True)
    with pytest.raises(CommandError, match=r"^refusing the package: bin/vpxenc: needs library"
                       r" libstdc\+\+\.so\.6, which Lambda's runtime does not provide"):
        build.assemble([build.Entry("bin/vpxenc", cxx.read_bytes(), True)], tmp_path / "a.zip")
    # Debian's own vpxenc: libvpx.so.7 is neither provided nor shipped (and libstdc++ too).
    with pytest.raises(CommandError, match=r"bin/vpxenc: needs library libvpx\.so\.7.*"
                       r"\(and 1 more\)$"):
        build.assemble([build.Entry("bin/vpxenc", SYSTEM_VPXENC.read_bytes(), True)],
                       tmp_path / "b.zip")
    assert not list(tmp_path.glob("*.zip"))


def _cc(out: Path, source: str, *flags: str) -> bytes:
    subprocess.run(["gcc", "-x", "c", "-o", str(out), "-", *flags], input=source, text=True,
                   check=True, cwd=out.parent)
    return out.read_bytes()


@pytest.mark.parametrize("dtags", ["--disable-new-dtags", "--enable-new-dtags"])
def test_library_resolution_matches_the_loader(tmp_path: Path, dtags: str) -> None:
    """bin/main needs liba.so through its own $ORIGIN path; liba.so needs libb.so and has no
    path of its own. With RPATH the loader finds libb.so through main's inherited RPATH, with
    RUNPATH it does not: the check must say what the real loader does when we run it."""
    lib = tmp_path / "lib"
    (tmp_path / "bin").mkdir()
    lib.mkdir()
    libb = _cc(lib / "libb.so", "int b(void) { return 7; }", "-shared", "-fPIC",
               "-Wl,-soname,libb.so")
    liba = _cc(lib / "liba.so", "int b(void); int a(void) { return b(); }", "-shared",
               "-fPIC", "-Wl,-soname,liba.so", "-Wl,--no-as-needed", "-L.", "-lb")
    main = _cc(tmp_path / "bin" / "main", "int a(void); int main(void) { return a() - 7; }",
               "-Wl,--no-as-needed", f"-L{lib}", "-la", f"-Wl,{dtags}",
               "-Wl,-rpath,$ORIGIN/../lib")
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    ran = subprocess.run([str(tmp_path / "bin" / "main")], env=env, capture_output=True,
                         text=True)
    problems, infos = elf.check_tree({"bin/main": main, "lib/liba.so": liba,
                                      "lib/libb.so": libb})
    if dtags == "--disable-new-dtags":
        assert infos["bin/main"].rpath == ["$ORIGIN/../lib"] and not infos["bin/main"].runpath
        assert ran.returncode == 0, ran.stderr
        assert problems == []
    else:
        assert infos["bin/main"].runpath == ["$ORIGIN/../lib"]
        assert "libb.so: cannot open shared object file" in ran.stderr
        assert problems == ["lib/liba.so: needs library libb.so, which Lambda's runtime does"
                            " not provide and the package does not ship where the loader"
                            " would look"]
    # Shipped somewhere no search path reaches, liba.so is refused either way.
    problems, _ = elf.check_tree({"bin/main": main, "liba.so": liba, "lib/libb.so": libb})
    assert problems[0].startswith("bin/main: needs library liba.so")


def test_size_limits_are_enforced(tmp_path: Path, monkeypatch) -> None:
    data = os.urandom(4096)  # does not compress, so zipped ~ unzipped
    entries = [build.Entry(f"f{i}", data) for i in range(4)]
    monkeypatch.setattr(build, "MAX_UNZIPPED", 3 * 4096)
    with pytest.raises(CommandError, match=r"^the package is 0\.0 MiB unzipped, over Lambda's"):
        build.assemble(entries, tmp_path / "big.zip")
    monkeypatch.setattr(build, "MAX_UNZIPPED", 10**9)
    monkeypatch.setattr(build, "MAX_ZIPPED", 3 * 4096)
    with pytest.raises(CommandError, match=r"zipped, over Lambda's .* direct-upload limit$"):
        build.assemble(entries, tmp_path / "big.zip")
    assert list(tmp_path.iterdir()) == []  # no partial zip left behind
    monkeypatch.setattr(build, "MAX_ZIPPED", 10**9)
    report = build.assemble(entries, tmp_path / "ok.zip")
    assert report.zipped == (tmp_path / "ok.zip").stat().st_size > 4 * 4096


def test_malformed_elf_is_refused_not_crashed(tmp_path: Path) -> None:
    good = SYSTEM_VPXENC.read_bytes()
    for cut in (20, 64, 200, 4096):
        with pytest.raises(elf.ElfError):
            elf.read_elf(good[:cut], "cut")
    with pytest.raises(CommandError, match=r"refusing the package: bin/x: "):
        build.assemble([build.Entry("bin/x", good[:4096], True)], tmp_path / "m.zip")


# --- determinism ------------------------------------------------------------------------------


def test_same_inputs_give_the_same_zip(lambda_build, tmp_path: Path) -> None:
    again = build.build(tmp_path / "again.zip")
    assert again.sha256 == lambda_build.sha256
    assert (tmp_path / "again.zip").read_bytes() == lambda_build.path.read_bytes()


# --- the static vpxenc is Debian's vpxenc ------------------------------------------------------


@pytest.mark.parametrize("clip", ["bus_cif_17f.y4m", "park_joy_160x90_10f.y4m"])
def test_static_vpxenc_output_identical_to_debian(lambda_task_root: Path, tmp_path: Path,
                                                  clip: str) -> None:
    if not SYSTEM_VPXENC.is_file():
        pytest.fail("Debian's vpxenc (vpx-tools) is the reference; install it")
    src = shared_dir() / "clips" / clip
    outs = []
    for name, exe in (("debian", SYSTEM_VPXENC), ("static", lambda_task_root / "bin/vpxenc")):
        out = tmp_path / f"{name}.ivf"
        subprocess.run([str(exe), *VPXENC_SETTINGS, "--cq-level=30", "-o", str(out), str(src)],
                       check=True, capture_output=True, timeout=300)
        outs.append(out.read_bytes())
    assert len(outs[0]) > 1000 and outs[0][:4] == b"DKIF"
    assert outs[0] == outs[1]


# --- the handler, in-process ------------------------------------------------------------------


def _unreachable_event(tmp_path: Path) -> dict:
    from excamera.mu import tls

    auth = tls.job_authority("lambdatest-00000000", None, None)
    creds = auth.issue_worker("lambdatest-00000000", 5)
    payload = LaunchPayload(
        coordinator_host="127.0.0.1", coordinator_port=_closed_port(),
        job_id="lambdatest-00000000", worker_id=5, token="t" * 32, cert_pem=creds.cert_pem.decode(),
        key_pem=creds.key_pem.decode(), ca_pem=creds.ca_pem.decode(), connect_timeout=1.0)
    return json.loads(payload.to_json())


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when this returns: nothing listens there


def test_handler_reports_failures_clearly(tmp_path: Path) -> None:
    from excamera.awslambda import handler as h

    with pytest.raises(h.PayloadError, match=r"^launch event: expected a JSON object, got int$"):
        h.handler(7, None)
    with pytest.raises(h.PayloadError, match=r"^launch event: launch payload has unknown"
                       r" fields: \['secret'\]"):
        h.handler({**_unreachable_event(tmp_path), "secret": "x"}, None)
    # A refused connection ends in this error, not a hang (pytest's timeout would catch one).
    with pytest.raises(h.WorkerFailed, match=r"^worker 5 of job lambdatest-00000000: cannot"
                       r" reach coordinator 127\.0\.0\.1:\d+"):
        h.handler(_unreachable_event(tmp_path), None)
    path = os.environ["PATH"].split(os.pathsep)
    assert path.count(str(h.task_root() / "bin")) == 1
    h.prepare_environment()  # idempotent under warm reuse
    assert os.environ["PATH"].split(os.pathsep).count(str(h.task_root() / "bin")) == 1


# --- the handler under awslambdaric, end to end ------------------------------------------------


class RuntimeAPI:
    """A minimal Lambda Runtime API for one execution environment (a test stand-in, not AWS).

    It serves what awslambdaric speaks: ``GET /2018-06-01/runtime/invocation/next`` (blocks
    until an event is queued), ``POST .../invocation/{id}/response|error`` and
    ``POST .../init/error``. Lambda's orchestration (scaling, timeouts, billing) is not here.
    """

    PREFIX = "/2018-06-01/runtime"

    def __init__(self) -> None:
        self.events: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.results: dict[str, tuple[str, dict]] = {}
        self.init_error: dict | None = None
        self.finished = threading.Condition()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _reply(self, status: int, body: bytes = b"", headers: dict | None = None):
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path != f"{api.PREFIX}/invocation/next":
                    return self._reply(404)
                rid, body = api.events.get()
                self._reply(200, body, {
                    "Content-Type": "application/json",
                    "Lambda-Runtime-Aws-Request-Id": rid,
                    "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + 120_000),
                    "Lambda-Runtime-Invoked-Function-Arn":
                        "arn:aws:lambda:us-east-1:000000000000:function:excamera-test",
                })

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                m = re.fullmatch(rf"{api.PREFIX}/invocation/([^/]+)/(response|error)", self.path)
                with api.finished:
                    if m:
                        api.results[m.group(1)] = (m.group(2), json.loads(body or b"null"))
                    elif self.path == f"{api.PREFIX}/init/error":
                        api.init_error = json.loads(body)
                    else:
                        return self._reply(404)
                    api.finished.notify_all()
                self._reply(202, b"{}")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.address = f"127.0.0.1:{self.server.server_address[1]}"

    def invoke(self, event: dict) -> str:
        rid = str(uuid.uuid4())
        self.events.put((rid, json.dumps(event).encode()))
        return rid

    def wait(self, rid: str, timeout: float) -> tuple[str, dict]:
        with self.finished:
            if not self.finished.wait_for(lambda: rid in self.results or self.init_error,
                                          timeout):
                raise TimeoutError(f"invocation {rid} got no response in {timeout} s")
            if self.init_error is not None:
                raise AssertionError(f"the handler failed to initialise: {self.init_error}")
            return self.results[rid]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Invocation(WorkerProcess):
    def __init__(self, worker_id: int, api: RuntimeAPI, rid: str, env_proc) -> None:
        self.worker_id, self.api, self.rid, self.env_proc = worker_id, api, rid, env_proc

    def alive(self) -> bool:
        return self.rid not in self.api.results and self.env_proc.poll() is None

    async def wait(self) -> int | None:
        kind, _ = await asyncio.to_thread(self.api.wait, self.rid, 120)
        return 0 if kind == "response" else 1

    async def kill(self) -> None:
        # The only way to end an invocation is to end its execution environment.
        self.env_proc.kill()

    def stderr_tail(self) -> str:
        kind, body = self.api.results.get(self.rid, ("", {}))
        return json.dumps(body) if kind == "error" else ""


class RuntimeBackend(Backend):
    name = "runtime-api-test"

    def __init__(self, api: RuntimeAPI, env_proc) -> None:
        self.api, self.env_proc = api, env_proc
        self.invocations: list[Invocation] = []

    async def launch(self, payload: LaunchPayload) -> WorkerProcess:
        inv = Invocation(payload.worker_id, self.api, self.api.invoke(json.loads(
            payload.to_json())), self.env_proc)
        self.invocations.append(inv)
        return inv


async def lambda_smoke_machine(w: WorkerHandle, ctx: JobContext) -> dict:
    """What a pass-0 worker needs from the zip: vpxenc on PATH, the extension, a private dir."""
    w.state = "probe"
    probe = await w.run_op("xcenc_probe")
    where = await w.run('printf "%s|%s" "$TMPDIR" "$(command -v vpxenc)"')
    tmpdir, vpxenc = where.stdout.split("|")
    w.state = "encode"
    await w.retrieve("clip.y4m", "clip.y4m")
    await w.run(["vpxenc", *VPXENC_SETTINGS, "--cq-level=30", "-o", "out.ivf", "clip.y4m"])
    await w.run_op("xcenc_tool", argv=["xc-dump", "out.ivf", "out.state"])
    await w.upload("out.ivf", f"out/{ctx.params['tag']}.ivf")
    await w.upload("out.state", f"out/{ctx.params['tag']}.state")
    return {"probe": probe, "tmpdir": tmpdir, "vpxenc": vpxenc}


@pytest.fixture
def lambda_environment(lambda_task_root, lambda_runtime_dir, python312, tmp_path):
    """One execution environment: awslambdaric in an isolated CPython 3.12 (-I -S) whose
    sys.path is only the task root and the runtime directory, and a Runtime API for it."""
    api = RuntimeAPI()
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LAMBDA_TASK_ROOT": str(lambda_task_root),
        "AWS_LAMBDA_RUNTIME_API": api.address,
        "AWS_LAMBDA_FUNCTION_NAME": "excamera-test",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1769",
        "AWS_REGION": "us-east-1",
        "TMPDIR": str(tmp_path / "lambda-tmp"),
        "HOME": str(tmp_path),
    }
    (tmp_path / "lambda-tmp").mkdir()
    boot = ("import sys, runpy; sys.path[:0] = sys.argv[2:4]; del sys.argv[2:4];"
            " runpy.run_module('awslambdaric', run_name='__main__', alter_sys=True)")
    stderr = tmp_path / "environment.log"
    with open(stderr, "wb") as log:
        proc = subprocess.Popen(
            [str(python312), "-I", "-S", "-c", boot, HANDLER, str(lambda_task_root),
             str(lambda_runtime_dir)], env=env, cwd=lambda_task_root, stdout=log,
            stderr=subprocess.STDOUT)
    try:
        yield api, proc, stderr
    finally:
        proc.kill()
        proc.wait()
        api.close()


def test_handler_runs_under_awslambdaric(lambda_environment, lambda_task_root: Path,
                                         tmp_path: Path) -> None:
    api, proc, log = lambda_environment
    store = tmp_path / "store"
    store.mkdir()
    clip = shared_dir() / "clips" / "park_joy_160x90_10f.y4m"
    shutil.copy(clip, store / "clip.y4m")

    results = []
    for tag in ("first", "second"):  # two jobs, one after another, in the same process
        backend = RuntimeBackend(api, proc)
        coord = Coordinator("lambdasmoke", 1, backend, str(store), lambda_smoke_machine,
                            params={"tag": tag}, connect_timeout=60,
                            operation_modules=[OPERATION_MODULE])
        try:
            result = asyncio.run(coord.run())
        except JobFailed as exc:
            pytest.fail(f"{exc}\n--- environment log ---\n{log.read_text()[-3000:]}")
        kind, report = api.results[backend.invocations[0].rid]
        assert kind == "response", report
        results.append((result.outputs[0], report))
    assert proc.poll() is None  # still the same warm process

    for (out, report), warm in zip(results, (False, True), strict=True):
        assert set(report) == {"exit", "init_s", "handler_s", "cpu_s", "warm"}
        assert report["exit"] == 0 and report["warm"] is warm
        assert report["handler_s"] > 0 and report["cpu_s"] > 0
        assert (report["init_s"] > 0) is (not warm)
        # The worker ran in the isolated 3.12 with the zip's tools.
        assert out["probe"]["python"].endswith("python3.12")
        assert out["probe"]["vpxenc"]
        assert out["vpxenc"] == str(lambda_task_root / "bin" / "vpxenc")
        assert not Path(out["tmpdir"]).exists()  # its directory went with the invocation
    assert results[0][0]["tmpdir"] != results[1][0]["tmpdir"]

    # The outputs are what Debian's vpxenc and this checkout's xc-dump make locally.
    ref = tmp_path / "ref.ivf"
    subprocess.run([str(SYSTEM_VPXENC), *VPXENC_SETTINGS, "--cq-level=30", "-o", str(ref),
                    str(clip)], check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "excamera.xc.tools_main", "xc-dump", str(ref),
                    str(tmp_path / "ref.state")], check=True, capture_output=True)
    for tag in ("first", "second"):
        assert (store / "out" / f"{tag}.ivf").read_bytes() == ref.read_bytes()
        assert (store / "out" / f"{tag}.state").read_bytes() == \
            (tmp_path / "ref.state").read_bytes()

    # A worker that cannot reach its coordinator: the error comes back naming what failed,
    # and the environment survives it for the next invocation.
    rid = api.invoke(_unreachable_event(tmp_path))
    kind, body = api.wait(rid, 60)
    assert kind == "error"
    assert body["errorType"] == "WorkerFailed"
    assert re.match(r"worker 5 of job lambdatest-00000000: cannot reach coordinator"
                    r" 127\.0\.0\.1:\d+", body["errorMessage"]), body
    assert "BEGIN" not in json.dumps(body)  # no key or certificate goes back
    assert proc.poll() is None
    assert "mu-worker 0" in log.read_text()  # the worker's log went to the function's log
