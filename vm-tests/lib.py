# Helpers shared by vaultnix's VM tests. Every wait is bounded. Typed against the driver's Machine
# API (vm-tests/stubs; the real package on a NixOS runner): a wrong call fails the type check.
import json
import time
from typing import TYPE_CHECKING, Callable, Optional, TypeVar

if TYPE_CHECKING:
    from test_driver.machine import BaseMachine

M = TypeVar("M", bound="BaseMachine")

CACERT = "/etc/vaultnix/ca.crt"


def bao_env(addr: str, token: Optional[str] = None) -> str:
    env = f"BAO_ADDR=https://{addr} BAO_CACERT={CACERT}"
    if token:
        env += f" BAO_TOKEN={token}"
    return env


def bao(machine: "BaseMachine", addr: str, args: str, token: Optional[str] = None) -> str:
    """Run `bao <args>` on machine against the server at addr (host:port); fail unless it succeeds."""
    return machine.succeed(f"{bao_env(addr, token)} bao {args}")


def bao_try(machine: "BaseMachine", addr: str, args: str, token: Optional[str] = None) -> "tuple[int, str]":
    """`bao`, returning (status, stdout) instead of failing."""
    return machine.execute(f"{bao_env(addr, token)} bao {args}")


def leader_of(servers: "list[M]", addrs: "dict[str, str]") -> Optional[M]:
    """The server that reports itself active, or None."""
    for m in servers:
        rc, out = m.execute(
            f"curl -sf --cacert {CACERT} https://{addrs[m.name]}/v1/sys/leader"
        )
        if rc == 0 and json.loads(out).get("is_self"):
            return m
    return None


def wait_for_leader(servers: "list[M]", addrs: "dict[str, str]", timeout: int = 180) -> M:
    """Wait until exactly one of servers is active; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        active = [m for m in servers if leader_of([m], addrs) is not None]
        if len(active) == 1:
            return active[0]
        time.sleep(2)
    raise Exception(f"no single active server among {[m.name for m in servers]} after {timeout}s")


def wait_until(what: str, predicate: Callable[[], bool], timeout: int = 180) -> None:
    """Poll predicate() until it is true; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(2)
    raise Exception(f"timed out after {timeout}s waiting for: {what}")


def kv_write(client: "BaseMachine", url: str, token: str, key: str, value: str) -> None:
    body = json.dumps({"data": {"v": value}})
    client.succeed(
        f"curl -sf -H 'X-Vault-Token: {token}' -X POST --data '{body}' {url}/v1/secret/data/{key}"
    )


def kv_read(client: "BaseMachine", url: str, token: str, key: str) -> str:
    out = client.succeed(
        f"curl -sf -H 'X-Vault-Token: {token}' {url}/v1/secret/data/{key}"
    )
    v = json.loads(out)["data"]["data"]["v"]
    assert isinstance(v, str), out
    return v


def voters(machine: "BaseMachine", addr: str, token: str) -> "list[str]":
    """Node ids of the raft voters; [] while the server cannot answer yet (right after
    `operator init` list-peers fails for a while): callers retry inside wait_until, which a
    `succeed` raising on the first error would abort."""
    rc, out = bao_try(machine, addr, "operator raft list-peers -format=json", token)
    if rc != 0:
        return []
    try:
        servers = json.loads(out)["data"]["config"]["servers"]
    except (ValueError, KeyError, TypeError):
        return []
    return [s["node_id"] for s in servers if s["voter"]]


def autopilot_healthy(machine: "BaseMachine", addr: str, token: str) -> bool:
    """Whether autopilot calls the cluster healthy. `bao operator raft autopilot state
    -format=json` prints the state itself, not a secret: top-level `Healthy`,
    `FailureTolerance`, `Servers`, ... (bao 2.7.2); there is no `data` wrapper."""
    rc, out = bao_try(machine, addr, "operator raft autopilot state -format=json", token)
    if rc != 0:
        return False
    try:
        return json.loads(out)["Healthy"] is True
    except (ValueError, KeyError, TypeError):
        return False
