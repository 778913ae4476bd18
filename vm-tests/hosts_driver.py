"""Runs a NixOS VM test's testScript on the hosts lab (`vaultnix lab up --hosts`), through the part of
the NixOS test driver's Machine API the vaultnix scripts use (vm-tests/stubs/test_driver: start, crash,
block, unblock, succeed, fail, execute, wait_for_unit, wait_for_open_port, wait_until_succeeds, and
the script symbols start_all, subtest, retry). The VMs stay the reference; this makes a broken script
fail here instead of on a KVM runner.

    python3 vm-tests/hosts_driver.py typecheck --test cluster
    python3 vm-tests/hosts_driver.py run --test cluster --vaultnix target/debug/vaultnix --dir /tmp/vmlab

The script, the machine names and the spec come from the .nix (vm-tests/test-script.nix, evaluated
with nix-instantiate). Each machine of the test is the lab host of the same name; every operation is
a `vaultnix lab machine` call (the lab logic lives in Rust: src/lab/hosts/machine.rs). A spare
machine (cluster.nix's `spare`: a server the test configures itself) is added to the lab when the
script starts it, with the configuration the test's Nix evaluation gives it (src/lab/hosts/spare.rs).
A machine the lab lacks fails on first use. Every subtest the script defines must run: a run in
which one of them never ran (behind a condition, an early return) fails, naming it.
"""

from __future__ import annotations

import argparse
import ast
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MYPY_VERSION = "1.18.2"


class RequestedAssertionFailed(AssertionError):
    """What the real driver raises when a machine operation fails (test_driver.errors)."""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def retry(fn: Callable[[bool], bool], timeout_seconds: int = 900) -> None:
    """As the driver's `retry`: call fn(False) every second until it is true, then fn(True) once."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_seconds:
        if fn(False):
            return
        time.sleep(1)
    elapsed = time.monotonic() - start
    if not fn(True):
        raise RequestedAssertionFailed(f"action timed out after {elapsed:.2f} seconds (timeout={timeout_seconds})")


class Lab:
    """The `vaultnix` binary and a hosts lab directory."""

    def __init__(self, vaultnix: str, directory: Path) -> None:
        self.vaultnix = vaultnix
        self.dir = directory

    def machine(self, host: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[bytes]:
        argv = [self.vaultnix, "lab", "machine", "--dir", str(self.dir), host, *args]
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)

    def up(self, spec: str, backup_timers: dict[str, dict[str, str | None]]) -> None:
        """`lab up --hosts`; the machines whose test configuration sets vaultnix.backup.onCalendar or
        .randomizedDelaySec get them (`--backup-timer`, `--backup-delay`: checked as systemd would)."""
        argv = [self.vaultnix, "lab", "up", "--hosts", "--no-bootstrap", "--spec", spec, "--dir", str(self.dir)]
        for node, timer in sorted(backup_timers.items()):
            if timer.get("onCalendar") is not None:
                argv += ["--backup-timer", f"{node}={timer['onCalendar']}"]
            if timer.get("randomizedDelaySec") is not None:
                argv += ["--backup-delay", f"{node}={timer['randomizedDelaySec']}"]
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, timeout=600)
        if r.returncode != 0:
            raise RuntimeError(f"vaultnix lab up --hosts failed (exit {r.returncode})")

    def down(self) -> None:
        if (self.dir / "hosts.json").exists():
            argv = [self.vaultnix, "lab", "down", "--purge", "--dir", str(self.dir)]
            subprocess.run(argv, stdin=subprocess.DEVNULL, timeout=300)


def spare_args(test: str, name: str, directory: Path, settings_file: Path) -> list[str]:
    """`vaultnix lab machine NAME add-server` arguments for spare machine `name` of the test: its
    configuration from the test's Nix evaluation against the lab's generated files (test-script.nix
    with `gen`); its server JSON is written to `settings_file`, byte for byte its settingsFile."""
    c = evaluate(test, gen=directory)["spareConfigs"][name]
    settings_file.write_text(c["settings"])
    argv = ["add-server", "--settings", str(settings_file), "--cert", c["certFile"], "--ca", c["caCertFile"]]
    for rule in c["tmpfiles"]:
        f = rule.split()
        # `L+ TARGET - - - - SOURCE` (common.secretLinks): the only rule a spare has.
        if len(f) != 7 or f[0] != "L+" or f[2:6] != ["-"] * 4:
            raise RuntimeError(f"{name}: tmpfiles rule {rule!r}: the hosts lab runs only `L+ TARGET - - - - SOURCE`")
        argv += ["--link", f"{f[1]}={f[6]}"]
    if c["keyFile"] is not None:
        argv += ["--key-file", c["keyFile"]]
    if c["sealKeyFile"] is not None:
        argv += ["--seal-key-file", c["sealKeyFile"]]
    return argv


class HostsMachine:
    """A machine of the VM test, backed by the lab host of the same name (`lab is None`: the lab has
    no such host, and every operation fails). A spare (`spare_add`: the `lab machine add-server`
    arguments, computed when it first starts) is powered off until `start()`, as a VM the script
    has not started."""

    def __init__(self, name: str, lab: Lab | None, spare_add: Callable[[], list[str]] | None = None) -> None:
        self.name = name
        self.lab = lab
        self.spare_add = spare_add
        # `lab up` boots every host of the cluster; start() is then a no-op, as on a booted VM.
        self.booted = spare_add is None

    def __repr__(self) -> str:
        return f"<HostsMachine '{self.name}'>"

    def log(self, msg: str) -> None:
        log(f"{self.name}: {msg}")

    def _lab(self) -> Lab:
        if self.lab is None:
            raise RequestedAssertionFailed(
                f"{self.name} is a machine of the VM test but not a host of the hosts lab "
                "(the lab has the spec's machines and a client)"
            )
        return self.lab

    def _op(self, *args: str) -> str:
        r = self._lab().machine(self.name, *args)
        err = r.stderr.decode(errors="replace").strip()
        if r.returncode != 0:
            raise RequestedAssertionFailed(f"{self.name}: {' '.join(args)}: {err}")
        return r.stdout.decode(errors="replace")

    # -- lifecycle (QemuMachine) --

    def start(self, allow_reboot: bool = False) -> None:
        if self.booted:
            return
        if self.spare_add is not None:
            self.log("adding the spare machine to the lab (its configuration from the test's Nix evaluation)")
            self._op(*self.spare_add())
            self.spare_add = None
            self.log("starting (first boot)")
        else:
            self.log("starting (booting the crashed host)")
        self._op("start")
        self.booted = True

    def crash(self) -> None:
        if not self.booted:
            return
        self.log("forced crash")
        self._op("crash")
        self.booted = False

    def block(self) -> None:
        self.log("block (link down)")
        self._op("block")

    def unblock(self) -> None:
        self.log("unblock (link up)")
        self._op("unblock")

    # -- commands (BaseMachine) --

    def execute(
        self,
        command: str,
        check_return: bool = True,
        check_output: bool = True,
        timeout: int | None = 900,
    ) -> tuple[int, str]:
        # As the real driver: execute connects to the machine, which boots it when it is down.
        self.start()
        shell = f"set -euo pipefail; {command}"
        argv = (["timeout", str(timeout)] if timeout is not None else []) + ["bash", "-c", shell]
        bound = (timeout if timeout is not None else 3600) + 60
        r = self._lab().machine(self.name, "exec", "--", *argv, timeout=bound)
        for line in r.stderr.decode(errors="replace").splitlines():
            self.log(f"  | {line}")
        if not check_output:
            return (-2, "")
        out = r.stdout.decode(errors="replace")
        if not check_return:
            return (-1, out)
        return (r.returncode, out)

    def succeed(self, *commands: str, timeout: int | None = None) -> str:
        output = ""
        for command in commands:
            self.log(f"must succeed: {command}")
            status, out = self.execute(command, timeout=timeout)
            if status != 0:
                self.log(f"output: {out}")
                raise RequestedAssertionFailed(f"command `{command}` failed (exit code {status})")
            output += out
        return output

    def fail(self, *commands: str, timeout: int | None = None) -> str:
        output = ""
        for command in commands:
            self.log(f"must fail: {command}")
            status, out = self.execute(command, timeout=timeout)
            if status == 0:
                raise RequestedAssertionFailed(f"command `{command}` unexpectedly succeeded")
            output += out
        return output

    def wait_until_succeeds(self, command: str, timeout: int = 900) -> str:
        output = ""

        def check_success(_last_try: bool) -> bool:
            nonlocal output
            status, output = self.execute(command, timeout=timeout)
            return status == 0

        self.log(f"waiting for success: {command}")
        retry(check_success, timeout)
        return output

    def wait_for_open_port(self, port: int, addr: str = "localhost", timeout: int = 900) -> None:
        def port_is_open(_last_try: bool) -> bool:
            status, _ = self.execute(f"nc -z {addr} {port}")
            return status == 0

        self.log(f"waiting for TCP port {port} on {addr}")
        retry(port_is_open, timeout)

    def wait_for_unit(self, unit: str, user: str | None = None, timeout: int = 900) -> None:
        """The unit's ActiveState as the lab maps it (src/lab/hosts/machine.rs): active returns,
        failed raises, a unit the lab does not have raises at once."""
        if user is not None:
            raise RequestedAssertionFailed(f"{self.name}: user units ({user}): the hosts lab has none")
        self.start()

        def check_active(_last_try: bool) -> bool:
            state = self._op("unit", unit).strip()
            if state == "failed":
                raise RequestedAssertionFailed(f'unit "{unit}" reached state "{state}"')
            return state == "active"

        self.log(f"waiting for unit {unit}")
        retry(check_active, timeout)


if TYPE_CHECKING:
    from test_driver.machine import QemuMachine

    def _implements_the_stub(m: HostsMachine) -> QemuMachine:
        return m  # mypy: HostsMachine has every method of the stub, with the same signature


# -- the test: what the .nix gives the driver --------------------------------------------------------


def evaluate(test: str, gen: Path | None = None) -> dict[str, Any]:
    """vm-tests/test-script.nix for `test`: name, testScript, nodes, spec, clients, spares (with `gen`,
    the generated directory, their configurations too)."""
    argv = ["nix-instantiate", "--eval", "--strict", "--json", str(HERE / "test-script.nix"), "--argstr", "test", test]
    if gen is not None:
        argv += ["--argstr", "gen", str(gen)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"nix-instantiate failed for vm-tests/{test}.nix: {r.stderr.strip()}")
    value: dict[str, Any] = json.loads(r.stdout)
    return value


def subtest_names(script: str) -> list[str]:
    """The `subtest("...")` names of a script, in order."""
    names = []
    for node in ast.walk(ast.parse(script)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "subtest"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.append((node.lineno, node.args[0].value))
    return [n for _, n in sorted(names)]


def never_ran(script: str, passed: list[str]) -> list[str]:
    """The subtests `script` defines that are not among `passed`: every one must run on the lab, as
    it does in the VM (a run that leaves one out is not a pass)."""
    return [n for n in subtest_names(script) if n not in passed]


def typed_script(script: str, nodes: list[str]) -> str:
    """The file nixpkgs' driver.nix type-checks: the prelude, one hint per machine, the script."""
    hints = " ".join(f"{n}: QemuMachine;" for n in nodes)
    return (HERE / "stubs" / "prelude.py").read_text() + hints + "\n" + script


def mypy(paths: list[str], extra: list[str]) -> int:
    tools = ROOT / ".tools" / f"mypy-{MYPY_VERSION}"
    if not (tools / "mypy").is_dir():
        raise RuntimeError(f"no mypy in {tools}: run scripts/install-tools.sh")
    env = dict(os.environ, PYTHONPATH=str(tools), MYPYPATH=str(HERE / "stubs"))
    argv = [sys.executable, "-m", "mypy", "--no-implicit-optional", "--pretty", "--no-color-output"]
    argv += ["--cache-dir", str(Path(tempfile.gettempdir()) / "vaultnix-mypy-cache"), *extra, *paths]
    return subprocess.run(argv, env=env, timeout=600).returncode


def typecheck(test: str, script_file: str | None) -> int:
    t = evaluate(test)
    script = Path(script_file).read_text() if script_file else t["testScript"]
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "testScriptWithTypes"
        f.write_text(typed_script(script, t["nodes"]))
        rc = mypy([str(f)], ["--scripts-are-modules"])
    print(f"typecheck {test}{' (' + script_file + ')' if script_file else ''}: {'ok' if rc == 0 else 'FAILED'}")
    return rc


def typecheck_driver() -> int:
    rc = mypy([str(HERE / "hosts_driver.py"), str(HERE / "lib.py")], ["--strict"])
    print(f"typecheck hosts_driver.py, lib.py (--strict): {'ok' if rc == 0 else 'FAILED'}")
    return rc


# -- running it --------------------------------------------------------------------------------------


def configure_clients(t: dict[str, Any], machines: dict[str, HostsMachine], lab: Lab) -> None:
    """What vm-tests/common.nix's `client` configures: the LB's name in /etc/hosts and the cluster CA
    in the system trust store (the host's /etc is its own overlay, not the machine's)."""
    ca = lab.dir / "flake" / "pki" / "ca.crt"
    for c in t["clients"]:
        m = machines[c["name"]]
        m.succeed(f"echo '{c['lbAddress']} {c['hostname']}' >> /etc/hosts")
        m.succeed(f"cat {ca} >> /etc/ssl/certs/ca-certificates.crt")
        m.log(f"configured as vm-tests/common.nix's client: {c['hostname']} -> {c['lbAddress']}, trusts {ca.name}")


def run(test: str, vaultnix: str, directory: Path, script_file: str | None, keep: bool) -> int:
    t = evaluate(test)
    script: str = Path(script_file).read_text() if script_file else t["testScript"]
    lab = Lab(str(Path(vaultnix).resolve()), directory.resolve())
    log(f"=== vm test {t['name']} on the hosts lab: spec {os.path.relpath(t['spec'], ROOT)}, dir {lab.dir}")
    passed: list[str] = []
    try:
        lab.up(t["spec"], t["backupTimers"])
        state = json.loads((lab.dir / "hosts.json").read_text())
        print(f"lab namespaces: {' '.join(state['netns'])}", flush=True)
        hosts = set(state["hosts"])
        spares: list[str] = t["spares"]
        machines = {n: HostsMachine(n, lab if n in hosts else None) for n in t["nodes"] if n not in spares}
        for n in spares:
            settings = lab.dir / "hosts" / f"{n}.settings.json"
            machines[n] = HostsMachine(n, lab, functools.partial(spare_args, test, n, lab.dir, settings))
        configure_clients(t, machines, lab)

        def start_all() -> None:
            for m in machines.values():
                if m.lab is not None:
                    m.start()

        @contextmanager
        def subtest(name: str) -> Iterator[None]:
            log(f"--- subtest: {name}")
            t0 = time.monotonic()
            try:
                yield
            except Exception as e:
                log(f'--- subtest "{name}" FAILED after {time.monotonic() - t0:.1f}s: {e}')
                raise
            passed.append(name)
            print(f"subtest passed ({time.monotonic() - t0:.1f}s): {name}", flush=True)

        symbols: dict[str, Any] = dict(start_all=start_all, subtest=subtest, retry=retry, os=os)
        symbols["BaseMachine"] = HostsMachine
        symbols.update(machines)
        exec(compile(script, f"<testScript of vm-tests/{test}.nix>", "exec"), symbols, None)
        missing = never_ran(script, passed)
        if missing:
            print(f"vm test {test}: FAILED: subtests never ran: {missing} ({len(passed)} passed)", flush=True)
            return 1
        print(f"vm test {test}: {len(passed)} subtests passed, every subtest of the script ran", flush=True)
        return 0
    except Exception:
        traceback.print_exc()
        print(f"vm test {test}: FAILED ({len(passed)} subtests passed before)", flush=True)
        return 1
    finally:
        if keep:
            log(f"--keep: the lab stays in {lab.dir} (vaultnix lab down --purge --dir {lab.dir})")
        else:
            lab.down()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    tc = sub.add_parser("typecheck", help="mypy: the script against the driver stub (and the driver itself)")
    tc.add_argument("--test", help="cluster or wireguard (default: both, and the driver)")
    tc.add_argument("--script", help="type-check this file as the test's script instead (fixtures)")
    r = sub.add_parser("run", help="run the test's script on a fresh hosts lab (root)")
    r.add_argument("--test", required=True)
    r.add_argument("--vaultnix", default=shutil.which("vaultnix") or str(ROOT / "target" / "debug" / "vaultnix"))
    r.add_argument("--dir", required=True, type=Path, help="the lab directory (must not hold a lab)")
    r.add_argument("--script", help="run this file as the test's script instead (fixtures)")
    r.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    a = p.parse_args()
    if a.cmd == "typecheck":
        if a.test:
            return typecheck(a.test, a.script)
        rcs = [typecheck(t, None) for t in ("cluster", "wireguard")] + [typecheck_driver()]
        return 0 if all(rc == 0 for rc in rcs) else 1
    return run(a.test, a.vaultnix, a.dir, a.script, a.keep)


if __name__ == "__main__":
    sys.exit(main())
