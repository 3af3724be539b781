"""Deploy-time builds (pip, npm, go) run as a uid of their own, away from the node's secrets
(deploy/isolate.py). Every deploy goes through a real `polyfn serve` running as root with every layer the
host allows; the files tried are real (/etc/shadow, the node's admin.key, another function's code)."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from .. import needs
from ..e2e.conftest import Server, error_code
from .conftest import CANARY, require

pytestmark = needs.unless(needs.ROOT, "deploy builds are isolated only when polyfn runs as root")


def deploy(node: Server, name: str, files: dict[str, str], **spec: object) -> dict:
    r = node.api.post("/v1/functions", json={"name": name, "files": files, **spec})
    return {"status": r.status_code, "code": error_code(r) if r.status_code >= 400 else "",
            "message": r.json().get("error", {}).get("message", "") if r.status_code >= 400 else "", "body": r.text}


def secret_lines(path: Path) -> list[str]:
    """The lines of a secret file worth leaking (long enough to be unambiguous in a message)."""
    return [ln.strip() for ln in path.read_text().splitlines() if len(ln.strip()) >= 6]


HANDLER = "def handler(event, context):\n    return 'ok'\n"


def test_requirements_cannot_read_shadow(node: Server) -> None:
    require(node, "mount ns")
    lines = secret_lines(Path("/etc/shadow"))
    assert lines, "the test needs a non-empty /etc/shadow"
    out = deploy(node, "req-shadow", {"handler.py": HANDLER, "requirements.txt": "-r /etc/shadow\n"})
    assert out["status"] == 400 and out["code"] == "dependency_install_failed", out
    for ln in lines:
        assert ln not in out["body"] and ln.split(":")[0] + ":" not in out["message"].replace("/etc/shadow", ""), ln
    assert "Permission denied" in out["message"] or "Errno 13" in out["message"], out["message"]


def test_requirements_cannot_read_the_admin_key(node: Server) -> None:
    require(node, "mount ns")
    key_file = node.data_dir / "admin.key"
    out = deploy(node, "req-key", {"handler.py": HANDLER, "requirements.txt": f"-r {key_file}\n"})
    assert out["status"] == 400 and out["code"] == "dependency_install_failed", out
    assert node.key not in out["body"] and node.key[:12] not in out["body"], out
    assert "No such file" in out["message"], out["message"]  # the data dir is not there at all


SETUP_PY = '''
import json, os, socket
from setuptools import setup

def attempt(fn):
    try:
        return "ok " + str(fn())[:80]
    except OSError as e:
        return type(e).__name__

def connect(port):
    with socket.create_connection(("127.0.0.1", port), timeout=3):
        return "connected"

status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
facts = {
    "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": os.getgroups(),
    "env": sorted(os.environ), "values": sorted(os.environ.values()),
    "home": os.environ.get("HOME", ""), "cwd": os.getcwd(),
    "no_new_privs": status["NoNewPrivs"].strip(),
    "admin_key": attempt(lambda: open(ADMIN_KEY).read()),
    "data_dir": attempt(lambda: os.listdir(DATA_DIR)),
    "shadow": attempt(lambda: open("/etc/shadow").read()),
    "api": attempt(lambda: connect(PORT)),
    "nproc": __import__("resource").getrlimit(__import__("resource").RLIMIT_NPROC)[0],
    "var_tmp": attempt(lambda: open("/var/tmp/polyfn-build-probe-PORT", "w").write("left")),
    "run_lock": attempt(lambda: open("/run/lock/polyfn-build-probe-PORT", "w").write("left")),
}
with open("probe_build.py", "w") as f:
    f.write("FACTS = " + repr(json.dumps(facts)) + "\\n")
setup(name="probe-build", version="1.0", py_modules=["probe_build"])
'''


def probe_files(node: Server) -> dict[str, str]:
    """A function whose local package's setup.py (run at deploy) records what the build could do."""
    setup = (SETUP_PY.replace("ADMIN_KEY", repr(str(node.data_dir / "admin.key")))
             .replace("DATA_DIR", repr(str(node.data_dir))).replace("PORT", str(node.port)))
    return {"handler.py": "import json, probe_build\ndef handler(event, context):\n    return json.loads(probe_build.FACTS)\n",
            "requirements.txt": "./probe\n", "probe/setup.py": setup}


def test_pip_build_runs_unprivileged_with_a_scrubbed_environment(node: Server) -> None:
    """A local package's setup.py runs at deploy (as any sdist's does): it records what it could do into the
    module it builds, and the function returns that."""
    require(node, "mount ns")
    out = deploy(node, "req-probe", probe_files(node))
    assert out["status"] in (200, 201), out
    r = node.http.post("/fn/req-probe", json={})
    assert r.status_code == 200, r.text
    facts = r.json()
    uid_base = 200_000 + 60_000  # the build uids follow the functions' (sandbox_uid_base + sandbox_uid_count)
    assert facts["uid"] == facts["euid"] == facts["gid"] and uid_base <= facts["uid"] < uid_base + 1024, facts
    assert facts["groups"] == [] and facts["no_new_privs"] == "1", facts
    assert not [k for k in facts["env"] if k.startswith("POLYFN_")], facts["env"]
    assert CANARY not in facts["values"] and node.key not in json.dumps(facts), facts["env"]
    assert facts["home"] and not facts["home"].startswith("/root"), facts["home"]
    assert facts["admin_key"] == "FileNotFoundError" and facts["shadow"] == "PermissionError", facts
    assert facts["data_dir"] == "ok ['deps']", facts["data_dir"]  # an empty tmpfs, down to its own build dir
    assert 0 < facts["nproc"] < 1_000_000, facts["nproc"]
    # /var/tmp is the build's own: what it leaves there is gone with it, never seen by the next build of its uid
    for shared in ("var_tmp", "run_lock"):
        host = f"/{shared.replace('_', '/')}/polyfn-build-probe-{node.port}"
        assert facts[shared] in ("ok 4", "FileNotFoundError") and not os.path.exists(host), (shared, facts[shared])
    if "egress" in node.log.read_text().split("instance isolation:")[1].splitlines()[0].split("; off:")[0]:
        assert facts["api"] == "ConnectionRefusedError", facts["api"]  # its own loopback, not the node's
    # what it installed is root's and read-only to every other uid (no later build or function alters it)
    installed = list((node.data_dir / "deps").glob("*/probe_build.py"))
    assert installed, list((node.data_dir / "deps").iterdir())
    deps_dir = installed[0].parent
    for p in [deps_dir, *deps_dir.rglob("*")]:
        st = p.lstat()
        assert st.st_uid == 0 and st.st_gid == 0, (p, st.st_uid)
        if not stat.S_ISLNK(st.st_mode):
            assert not st.st_mode & 0o022, (p, oct(st.st_mode))
    assert not [p for p in (node.data_dir / "deps").iterdir() if p.name.startswith(".build-")]


def code_dir(node: Server, name: str) -> Path:
    """Where the node keeps a function's code (data_dir/code/NAME/SHA)."""
    dirs = list((node.data_dir / "code" / name).iterdir())
    assert len(dirs) == 1, dirs
    return dirs[0]


def test_npm_cannot_take_another_functions_code(node: Server) -> None:
    require(node, "mount ns")
    needs.tool("npm")
    victim = {"index.js": "exports.handler = async () => 'victim';",
              "package.json": json.dumps({"name": "victim", "version": "1.0.0", "main": "index.js"})}
    assert deploy(node, "npm-victim", victim)["status"] in (200, 201)
    target = code_dir(node, "npm-victim")
    assert (target / "package.json").exists()
    pkg = json.dumps({"name": "thief", "version": "1.0.0", "dependencies": {"victim": f"file:{target}"}})
    out = deploy(node, "npm-thief", {"index.js": "exports.handler = async () => require('victim');",
                                     "package.json": pkg})
    assert out["status"] == 400 and out["code"] == "dependency_install_failed", out


GO_MAIN = '''package main

import (
	"net/http"
	"os"
	victim "example.com/victim"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(victim.Secret)) })
	http.ListenAndServe(":"+os.Getenv("PORT"), nil)
}
'''


@pytest.mark.skipif(shutil.which("go") is None and os.environ.get("CI") != "true",
                    reason="no Go toolchain (apt-get install golang-go)")
def test_go_replace_cannot_compile_in_another_functions_code(node: Server) -> None:
    require(node, "mount ns")
    victim = {"handler.py": "SECRET = 1\ndef handler(event, context):\n    return 'victim'\n",
              "go.mod": "module example.com/victim\n\ngo 1.19\n",
              "secret.go": 'package victim\n\nconst Secret = "victim-secret-31337"\n'}
    assert deploy(node, "go-victim", victim)["status"] in (200, 201)
    target = code_dir(node, "go-victim")
    assert (target / "secret.go").exists()
    files = {"main.go": GO_MAIN,
             "go.mod": f"module thief\n\ngo 1.19\n\nrequire example.com/victim v0.0.0\n\nreplace example.com/victim => {target}\n"}
    out = deploy(node, "go-thief", files, runtime="http", handler="@go")
    assert out["status"] == 400 and out["code"] == "build_failed", out
    assert str(target) in out["message"] or "no such file" in out["message"].lower(), out["message"]


@pytest.mark.skipif((shutil.which("go") is None or shutil.which("gcc") is None) and os.environ.get("CI") != "true",
                    reason="no Go toolchain or C compiler")
def test_go_cgo_include_of_shadow_shows_nothing(node: Server) -> None:
    require(node, "mount ns")
    lines = secret_lines(Path("/etc/shadow"))
    cgo = 'package main\n\n// #include "/etc/shadow"\nimport "C"\n\nfunc main() {}\n'
    out = deploy(node, "go-cgo", {"main.go": cgo, "go.mod": "module cgo\n\ngo 1.19\n"}, runtime="http", handler="@go")
    assert out["status"] == 400 and out["code"] == "build_failed", out
    for ln in lines:
        assert ln not in out["body"], ln


HANGING_SETUP_PY = '''
import os, time
if os.fork() == 0:  # a daemon of its own session, left behind by the build
    os.setsid()
    if os.fork() == 0:
        os.execvp("sleep", ["sleep", "MARK"])
    os._exit(0)
time.sleep(3600)
'''


def test_a_build_is_killed_at_the_timeout_with_everything_it_started(tmp_path: Path) -> None:
    from ..e2e.conftest import pid_alive, start_server, wait_until

    mark = f"{3000 + os.getpid() % 1000}.25"  # `sleep MARK`: this test's daemon, found by its command line

    def daemons() -> list[int]:
        found = []
        for d in Path("/proc").iterdir():
            try:
                if d.name.isdigit() and (d / "cmdline").read_bytes() == f"sleep\0{mark}\0".encode():
                    found.append(int(d.name))
            except OSError:
                pass
        return found

    node = start_server(tmp_path / "data", env={"POLYFN_BUILD_TIMEOUT": "10"})
    try:
        require(node, "mount ns")
        files = {"handler.py": HANDLER, "requirements.txt": "./hang\n",
                 "hang/setup.py": HANGING_SETUP_PY.replace("MARK", mark)}
        out = deploy(node, "req-hang", files)
        assert out["status"] == 400 and out["code"] == "dependency_install_failed", out
        assert "still running after 10 s" in out["message"], out["message"]
        assert wait_until(lambda: not [p for p in daemons() if pid_alive(p)], 10), daemons()
        assert not [p for p in (node.data_dir / "deps").iterdir() if p.name.startswith(".build-")]
        assert deploy(node, "after-hang", {"handler.py": HANDLER})["status"] in (200, 201)  # the node is fine
    finally:
        node.stop()


def test_sandbox_disable_build_runs_builds_as_the_server_as_before(tmp_path: Path) -> None:
    """The operator's way out (POLYFN_SANDBOX_DISABLE=build), and the path a node without root takes."""
    from ..e2e.conftest import start_server

    node = start_server(tmp_path / "data", env={"POLYFN_SANDBOX_DISABLE": "build"})
    try:
        out = deploy(node, "req-probe-root", probe_files(node))
        assert out["status"] in (200, 201), out
        facts = node.http.post("/fn/req-probe-root", json={}).json()
        assert facts["uid"] == 0 and facts["admin_key"].startswith("ok "), facts
        assert "deploy builds: as the server" in node.log.read_text()
    finally:
        node.stop()
        for shared in ("/var/tmp", "/run/lock"):  # (the probe's files, left on the host by design here)
            Path(shared, f"polyfn-build-probe-{node.port}").unlink(missing_ok=True)


def csharp(body: str = 'return new OkObjectResult("ok");', head: str = "") -> str:
    """An anonymous C# HTTP function (the seed's shape) running `body`, with `head` before the class."""
    return (head + "public static class Probe {\n    [FunctionName(\"Probe\")]\n    public static IActionResult Run("
            "[HttpTrigger(AuthorizationLevel.Anonymous, \"get\")] HttpRequest req) {\n        " + body + "\n    }\n}\n")


@pytest.mark.skipif(__import__("polyfn.runtimes.dotnet", fromlist=["toolchain"]).toolchain() is None
                    and os.environ.get("CI") != "true", reason="no Mono (apt-get install mono-mcs mono-runtime)")
def test_csharp_build_cannot_read_shadow_or_the_data_dir(node: Server) -> None:
    """`AssemblyKeyFile` makes mcs open the file it names at deploy (to sign the assembly): as root it read
    /etc/shadow and the node's admin.key (and said they had the wrong format); in the build sandbox it cannot."""
    require(node, "mount ns")
    lines = secret_lines(Path("/etc/shadow"))
    out = deploy(node, "cs-shadow", {"Probe.cs": csharp(head='[assembly: System.Reflection.AssemblyKeyFile("/etc/shadow")]\n')})
    assert out["status"] == 400 and out["code"] == "build_failed", out
    assert "incorrect format" not in out["message"] and "denied" in out["message"], out["message"]
    for ln in lines:
        assert ln not in out["body"], ln
    key_file = node.data_dir / "admin.key"
    out = deploy(node, "cs-key", {"Probe.cs": csharp(head=f'[assembly: System.Reflection.AssemblyKeyFile("{key_file}")]\n')})
    assert out["status"] == 400 and out["code"] == "build_failed", out
    assert "incorrect format" not in out["message"] and node.key not in out["body"], out["message"]
    assert "does not exist" in out["message"], out["message"]  # the data dir is not there at all
    # the node still builds C#, and what it built is root's and read-only to others
    assert deploy(node, "cs-fine", {"Probe.cs": csharp()})["status"] in (200, 201)
    assert node.http.get("/fn/cs-fine").text == "ok"
    built = [p for p in (node.data_dir / "build").iterdir() if (p / "function.dll").exists()]
    assert built and not [p for p in (node.data_dir / "build").iterdir() if p.name.startswith(".build-")]
    for p in [built[0], *built[0].rglob("*")]:
        st = p.lstat()
        assert st.st_uid == 0 and not st.st_mode & 0o022, (p, st.st_uid, oct(st.st_mode))


@pytest.mark.skipif(__import__("polyfn.runtimes.dotnet", fromlist=["toolchain"]).toolchain() is None
                    and os.environ.get("CI") != "true", reason="no Mono (apt-get install mono-mcs mono-runtime)")
def test_a_csharp_source_name_is_never_a_compiler_option(node: Server) -> None:
    """A source named `-resource:/etc/shadow,x.cs` was passed to mcs as that option: /etc/shadow embedded in the
    function's assembly, which returned it. Now every name is `./NAME`: a source file like any other."""
    read = ('using (var s = typeof(Probe).Assembly.GetManifestResourceStream("x.cs"))\n'
            '            return new OkObjectResult(s == null ? "none" : new StreamReader(s).ReadToEnd());')
    out = deploy(node, "cs-option", {"Probe.cs": csharp(read), "-resource:/etc/shadow,x.cs": "class Extra {}\n"})
    assert out["status"] in (200, 201), out
    text = node.http.get("/fn/cs-option").text
    assert text == "none" and not [ln for ln in secret_lines(Path("/etc/shadow")) if ln in text], text


FAKE_PIP = '''
import os, sys
target = sys.argv[sys.argv.index("--target") + 1]
with open(os.path.join(target, "six.py"), "w") as f:
    f.write("import os\\ntry:\\n    open(MARK, 'w').write(str(os.getuid()))\\nexcept OSError:\\n    pass\\nPOISONED = True\\n")
os.mkdir(os.path.join(target, "six-1.16.0.dist-info"))  # (what a package zygote reads: its name, its modules)
with open(os.path.join(target, "six-1.16.0.dist-info", "METADATA"), "w") as f:
    f.write("Metadata-Version: 2.1\\nName: six\\nVersion: 1.16.0\\n")
with open(os.path.join(target, "six-1.16.0.dist-info", "top_level.txt"), "w") as f:
    f.write("six\\n")
'''


def test_a_functions_code_cannot_stand_in_for_pip(node: Server) -> None:
    """pip ran as `python -m pip` in a copy of the function's code, so a `pip/` package of the code was the pip that
    ran: it put what it liked under the requirements' names, cached by their hash alone — the dependencies of every
    function with the same requirements.txt — and a package zygote imported it as root (six is on its default trust
    list). Now pip runs with `-I`: the code's directory is not on its sys.path."""
    from ..e2e.conftest import wait_until

    require(node, "mount ns")
    mark = node.data_dir.parent / "imported-as-root"
    attacker = {"handler.py": HANDLER, "requirements.txt": "six\n", "pip/__init__.py": "",
                "pip/__main__.py": FAKE_PIP.replace("MARK", repr(str(mark)))}
    deploy(node, "pip-shadow", attacker)
    victim = {"handler.py": "import six\ndef handler(event, context):\n    return [getattr(six, 'POISONED', False), six.__file__]\n",
              "requirements.txt": "six\n"}
    out = deploy(node, "pip-victim", victim)
    assert out["status"] in (200, 201), out
    r = node.http.post("/fn/pip-victim", json={})
    assert not wait_until(mark.exists, 3), f"a package zygote imported the build's six.py as uid {mark.read_text()}"
    assert r.status_code == 200 and r.json()[0] is False, r.text


def test_an_uploaded_node_modules_is_not_the_install_others_share(node: Server) -> None:
    """npm keeps a `node_modules` it finds, and the install was made in a copy of the whole upload but cached by
    package.json's hash: an upload's own `node_modules/is-number` became the is-number of every function with the
    same package.json. Now the build sees only what its key covers (package.json, the lockfile, .npmrc)."""
    require(node, "mount ns")
    needs.tool("npm")
    pkg = json.dumps({"name": "app", "version": "1.0.0", "dependencies": {"is-number": "7.0.0"}})
    handler = "exports.handler = async () => String(require('is-number')(5));"
    attacker = {"index.js": handler, "package.json": pkg,
                "node_modules/is-number/package.json": json.dumps({"name": "is-number", "version": "7.0.0"}),
                "node_modules/is-number/index.js": "module.exports = () => 'poisoned';"}
    assert deploy(node, "npm-poison", attacker)["status"] in (200, 201)
    assert node.http.post("/fn/npm-poison", json={}).text == "poisoned"  # (its own code still comes first for itself)
    out = deploy(node, "npm-victim2", {"index.js": handler, "package.json": pkg})
    assert out["status"] in (200, 201), out
    assert node.http.post("/fn/npm-victim2", json={}).text == "true"


CONFIG_PROBE_PY = '''
import json, os
from setuptools import setup

def read(path):
    try:
        return open(path).read()
    except OSError as e:
        return type(e).__name__

home = os.environ.get("HOME", "")
facts = {"env": sorted(os.environ.values()), "etc_pip_conf": read("/etc/pip.conf"),
         "home_pip_conf": read(os.path.join(home, ".config/pip/pip.conf")), "npmrc": read(os.path.join(home, ".npmrc"))}
with open("config_probe.py", "w") as f:
    f.write("FACTS = " + repr(json.dumps(facts)) + "\\n")
setup(name="config-probe", version="1.0", py_modules=["config_probe"])
'''


def test_a_build_gets_the_operators_index_settings_without_their_credentials(tmp_path: Path) -> None:
    """The operator's pip settings (site files, user file, PIP_CONFIG_FILE, PIP_* variables) and npm's reach the
    build — its pip still finds the node's indexes — but no URL keeps a user or password, npm's auth token is left
    out, and the host's /etc/pip.conf reads as empty (any uid could read it)."""
    from ..e2e.conftest import start_server

    operator = tmp_path / "operator-pip.conf"  # (pip then skips the user's files: the machine's settings go in it)
    user_conf = Path.home() / ".config/pip/pip.conf"
    operator.write_text((user_conf.read_text() if user_conf.exists() else "")
                        + "\n[search]\nindex = https://operator:s3cret-file@idx.invalid/pypi\n")
    (tmp_path / "home").mkdir()
    for rel in (".config/pip/pip.conf", ".npmrc"):  # (the server's user files: the machine's pip settings, a token)
        src = Path.home() / rel
        (tmp_path / "home" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "home" / rel).write_text(src.read_text() if src.exists() and rel.endswith("pip.conf") else "")
    with open(tmp_path / "home/.npmrc", "a") as f:
        f.write("//registry.npmjs.org/:_authToken=s3cret-npm\nfund=false\n")
    env = {"PIP_CONFIG_FILE": str(operator), "PIP_INDEX": "https://operator:s3cret-env@idx.invalid/pypi",
           "HOME": str(tmp_path / "home")}
    node = start_server(tmp_path / "data", env=env)
    try:
        require(node, "mount ns")
        files = {"handler.py": "import json, config_probe\ndef handler(event, context):\n    return json.loads(config_probe.FACTS)\n",
                 "requirements.txt": "./probe\n", "probe/setup.py": CONFIG_PROBE_PY}
        out = deploy(node, "cfg-probe", files)
        assert out["status"] in (200, 201), out  # (its pip found setuptools through the operator's settings)
        facts = node.http.post("/fn/cfg-probe", json={}).json()
        assert "env" in facts and "s3cret" not in json.dumps(facts), facts
        assert "https://idx.invalid/pypi" in facts["env"], facts["env"]  # the setting, without its credentials
        assert "index = https://idx.invalid/pypi" in facts["home_pip_conf"], facts["home_pip_conf"]
        assert "fund=false" in facts["npmrc"], facts["npmrc"]
        if Path("/etc/pip.conf").exists():
            assert facts["etc_pip_conf"] == "", facts["etc_pip_conf"]
    finally:
        node.stop()


def test_a_crashed_servers_build_directories_are_swept_at_start(tmp_path: Path) -> None:
    """A server killed mid-build leaves its `.build-*` directory (inputs, a half-made install); the next start removes
    it — never through a link, never a directory of another name, never one a live build holds."""
    import fcntl
    import signal
    import threading

    from ..e2e.conftest import start_server, wait_until

    data = tmp_path / "data"
    node = start_server(data, fork=False)
    files = {"handler.py": HANDLER, "requirements.txt": "./hang\n",
             "hang/setup.py": "import time\ntime.sleep(600)\n"}
    def deploy_until_killed() -> None:
        try:
            deploy(node, "req-crash", files)
        except Exception:  # (the server dies under it)
            pass

    threading.Thread(target=deploy_until_killed, daemon=True).start()
    deps = data / "deps"
    assert wait_until(lambda: [p for p in deps.iterdir() if p.name.startswith(".build-")] if deps.is_dir() else [], 60)
    left = [p for p in deps.iterdir() if p.name.startswith(".build-")]
    node.stop(signal.SIGKILL)
    assert all(p.is_dir() for p in left), left  # (what the crash leaves)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    (deps / ".build-link0000").symlink_to(outside)  # a link of that name: not polyfn's, never followed
    (deps / "not-a-build").mkdir()
    live = deps / ".build-live0000"  # a build of another node sharing the data dir: it holds the flock
    live.mkdir()
    fd = os.open(live, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        node = start_server(data)
        try:
            assert not [p for p in left if os.path.lexists(p)], left
            assert (deps / ".build-link0000").is_symlink() and (outside / "keep").exists()
            assert (deps / "not-a-build").is_dir() and live.is_dir()
            assert "removed 1 build directories" in node.log.read_text()
        finally:
            node.stop()
    finally:
        os.close(fd)


MEMORY_SETUP_PY = '''
import resource
from setuptools import setup
soft = resource.getrlimit(resource.RLIMIT_AS)[0]
try:
    block = bytearray(1536 << 20)  # more than the node's build memory
    result = "allocated"
except MemoryError:
    result = "MemoryError"
with open("mem_probe.py", "w") as f:
    f.write("FACTS = " + repr([soft, result]) + "\\n")
setup(name="mem-probe", version="1.0", py_modules=["mem_probe"])
'''


def test_without_a_memory_cgroup_a_build_is_bounded_by_its_address_space(tmp_path: Path) -> None:
    """No memory cgroup (here: the layer turned off): `POLYFN_BUILD_MEMORY` becomes RLIMIT_AS (+512 MB of headroom
    for what runtimes reserve), so a build that allocates more gets MemoryError instead of the node's memory."""
    from ..e2e.conftest import start_server

    node = start_server(tmp_path / "data", env={"POLYFN_SANDBOX_DISABLE": "cgroup", "POLYFN_BUILD_MEMORY": "512"})
    try:
        require(node, "mount ns")
        files = {"handler.py": "import mem_probe\ndef handler(event, context):\n    return mem_probe.FACTS\n",
                 "requirements.txt": "./probe\n", "probe/setup.py": MEMORY_SETUP_PY}
        out = deploy(node, "mem-probe", files)
        assert out["status"] in (200, 201), out
        assert node.http.post("/fn/mem-probe", json={}).json() == [(512 + 512) << 20, "MemoryError"]
    finally:
        node.stop()
