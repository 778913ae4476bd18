# The testScript of vm-tests/wireguard.nix (prefixed there with lib.py; vm-tests/README.md).
servers = [node1, node2, node3]
addrs = {
    "node1": "10.77.0.3:8200",
    "node2": "10.77.0.4:8200",
    "node3": "10.77.0.5:8200",
}
LB = "https://vault.vault.test:8200"

start_all()

with subtest("the WireGuard mesh comes up"):
    for m in [lb, *servers]:
        # scripted networking.wireguard; with networkd this would be vaultnix-overlay-ready
        m.wait_for_unit("wireguard-wg0.service")
    node1.wait_until_succeeds("ping -c1 -W2 10.77.0.4", timeout=60)
    node1.wait_until_succeeds("ping -c1 -W2 10.77.0.2", timeout=60)

with subtest("the cluster forms over wg0"):
    for m in servers:
        m.wait_for_unit("openbao.service")
        m.wait_for_open_port(8200, addrs[m.name].split(":")[0], timeout=120)
    init = json.loads(
        bao(node1, addrs["node1"],
            "operator init -format=json -recovery-shares=1 -recovery-threshold=1")
    )
    root = init["root_token"]
    wait_until("3 raft voters",
               lambda: len(voters(node1, addrs["node1"], root)) == 3, timeout=240)
    active = wait_for_leader(servers, addrs)
    bao(active, addrs[active.name], "secrets enable -path=secret kv-v2", root)

with subtest("the client writes and reads through the load balancer"):
    lb.wait_for_unit("haproxy.service")
    client.wait_until_succeeds(f"curl -sf {LB}/v1/sys/health", timeout=120)
    kv_write(client, LB, root, "wg", "yes")
    assert kv_read(client, LB, root, "wg") == "yes"

with subtest("the cluster port answers on wg0 only"):
    node1.succeed("nc -z -w 3 10.77.0.4 8201")
    # OpenBao binds the wg0 address only, so on eth1 nothing would answer anyway: put probe
    # listeners on node2's eth1 address (same ports), prove they answer locally, and only
    # then that the firewall keeps node1 and the client out. A background job with its output
    # closed (execute waits for stdout to close), not systemd-run: the hosts lab has no systemd.
    for port in (8200, 8201):
        node2.succeed(f"nc -lk 192.168.1.4 {port} </dev/null >/dev/null 2>&1 & echo $! > /run/probe-{port}.pid")
        node2.wait_until_succeeds(f"nc -z -w 3 192.168.1.4 {port}", timeout=30)
    node1.fail("nc -z -w 3 192.168.1.4 8201")
    client.fail("nc -z -w 3 192.168.1.4 8201")
    client.fail("nc -z -w 3 192.168.1.4 8200")
    for port in (8200, 8201):
        node2.succeed(f"kill $(cat /run/probe-{port}.pid)")
