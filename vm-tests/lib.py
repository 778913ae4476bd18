# Helpers shared by vaultnix's VM tests. Every wait is bounded.
import json
import time

CACERT = "/etc/vaultnix/ca.crt"


def bao(machine, addr, args, token=None, check=True):
    """Run `bao <args>` on machine against the server at addr (host:port)."""
    env = f"BAO_ADDR=https://{addr} BAO_CACERT={CACERT}"
    if token:
        env += f" BAO_TOKEN={token}"
    cmd = f"{env} bao {args}"
    return machine.succeed(cmd) if check else machine.execute(cmd)


def leader_of(servers, addrs):
    """The server that reports itself active, or None."""
    for m in servers:
        rc, out = m.execute(
            f"curl -sf --cacert {CACERT} https://{addrs[m.name]}/v1/sys/leader"
        )
        if rc == 0 and json.loads(out).get("is_self"):
            return m
    return None


def wait_for_leader(servers, addrs, timeout=180):
    """Wait until exactly one of servers is active; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        active = [m for m in servers if leader_of([m], addrs) is not None]
        if len(active) == 1:
            return active[0]
        time.sleep(2)
    raise Exception(f"no single active server among {[m.name for m in servers]} after {timeout}s")


def wait_until(what, predicate, timeout=180):
    """Poll predicate() until it is true; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(2)
    raise Exception(f"timed out after {timeout}s waiting for: {what}")


def kv_write(client, url, token, key, value):
    body = json.dumps({"data": {"v": value}})
    client.succeed(
        f"curl -sf -H 'X-Vault-Token: {token}' -X POST --data '{body}' {url}/v1/secret/data/{key}"
    )


def kv_read(client, url, token, key):
    out = client.succeed(
        f"curl -sf -H 'X-Vault-Token: {token}' {url}/v1/secret/data/{key}"
    )
    return json.loads(out)["data"]["data"]["v"]


def voters(machine, addr, token):
    """Node ids of the raft voters; [] while the server cannot answer yet (right after
    `operator init` list-peers fails for a while): callers retry inside wait_until, which a
    `succeed` raising on the first error would abort."""
    rc, out = bao(machine, addr, "operator raft list-peers -format=json", token, check=False)
    if rc != 0:
        return []
    try:
        servers = json.loads(out)["data"]["config"]["servers"]
    except (ValueError, KeyError, TypeError):
        return []
    return [s["node_id"] for s in servers if s["voter"]]


def autopilot_healthy(machine, addr, token):
    """Whether autopilot calls the cluster healthy. `bao operator raft autopilot state
    -format=json` prints the state itself, not a secret: top-level `Healthy`,
    `FailureTolerance`, `Servers`, ... (bao 2.7.2); there is no `data` wrapper."""
    rc, out = bao(machine, addr, "operator raft autopilot state -format=json", token, check=False)
    if rc != 0:
        return False
    try:
        return json.loads(out)["Healthy"] is True
    except (ValueError, KeyError, TypeError):
        return False
