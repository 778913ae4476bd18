# The testScript of vm-tests/cluster.nix (prefixed there with lib.py; vm-tests/README.md).
servers = [node1, node2, node3]
addrs = {
    "node1": "192.168.1.3:8200",
    "node2": "192.168.1.4:8200",
    "node3": "192.168.1.5:8200",
}
LB = "https://vault.vault.test:8200"

for m in [client, lb, *servers]:
    m.start()

with subtest("servers start and listen on their addresses"):
    for m in servers:
        m.wait_for_unit("openbao.service")
        m.wait_for_open_port(8200, addrs[m.name].split(":")[0], timeout=120)

with subtest("initialise node1; node2 and node3 join through retry_join"):
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
    kv_write(client, LB, root, "t1", "one")
    assert kv_read(client, LB, root, "t1") == "one"

with subtest("the API port is closed to machines that are not allowed"):
    client.fail("nc -z -w 3 192.168.1.3 8200")
    client.fail("nc -z -w 3 192.168.1.3 8201")

with subtest("crash the leader: a new leader is elected and writes resume"):
    old = wait_for_leader(servers, addrs)
    old.crash()
    survivors = [m for m in servers if m is not old]
    # Elected among the survivors only: wait_for_leader fails unless exactly one of them is active.
    new = wait_for_leader(survivors, addrs, timeout=120)
    client.wait_until_succeeds(
        f"curl -sf -H 'X-Vault-Token: {root}' -X POST --data '{{\"data\":{{\"v\":\"two\"}}}}' "
        f"{LB}/v1/secret/data/t2",
        timeout=120,
    )
    assert kv_read(client, LB, root, "t1") == "one"
    assert kv_read(client, LB, root, "t2") == "two"
    old.start()
    old.wait_for_unit("openbao.service")
    wait_until("the crashed node is back and the cluster healthy",
               lambda: autopilot_healthy(new, addrs[new.name], root), timeout=300)

with subtest("cut a follower off the network: it rejoins and catches up"):
    active = wait_for_leader(servers, addrs)
    follower = next(m for m in servers if m is not active)
    follower.block()
    # Long enough for raft to notice: autopilot marks the follower unhealthy first.
    wait_until(f"autopilot notices {follower.name} is gone",
               lambda: not autopilot_healthy(active, addrs[active.name], root), timeout=120)
    kv_write(client, LB, root, "t3", "three")
    follower.unblock()
    wait_until(f"{follower.name} healthy again",
               lambda: autopilot_healthy(active, addrs[active.name], root), timeout=300)
    assert kv_read(client, LB, root, "t3") == "three"

with subtest("the backup timer writes a verified snapshot and a metric"):
    policy = 'path "sys/storage/raft/snapshot" { capabilities = ["read"] }'
    node1.succeed(
        f"echo '{policy}' | BAO_ADDR=https://{addrs['node1']} BAO_CACERT={CACERT} "
        f"BAO_TOKEN={root} bao policy write snapshot -"
    )
    token = bao(node1, addrs["node1"], "token create -policy=snapshot -field=token", root).strip()
    node1.succeed(
        f"install -m 0600 /dev/null /var/lib/vaultnix/secrets/backup-token"
        f" && printf %s {token} > /var/lib/vaultnix/secrets/backup-token"
    )
    # The sidecar is written after the snapshot: wait for it, not for the .snap. It is the one
    # `vaultnix snapshot verify` (the restore path) checks.
    node1.wait_until_succeeds("ls /var/backups/vaultnix/*.snap.json", timeout=240)
    node1.succeed("for f in /var/backups/vaultnix/*.snap; do vaultnix snapshot verify $f; done")
    node1.succeed("test -z \"$(find /var/backups/vaultnix -name '.*.tmp-*')\"")
    node1.wait_until_succeeds(
        "curl -sf http://127.0.0.1:9100/metrics | grep -q '^vaultnix_backup_last_success_timestamp_seconds'",
        timeout=60,
    )

with subtest("the snapshot restores into a fresh node"):
    snap = node1.succeed("ls -t /var/backups/vaultnix/*.snap | head -n1").strip()
    # Through the driver's shared directory (/tmp/shared in every VM), not as a shell
    # argument (base64 in one argument fails past 128 KiB).
    node1.succeed(f"cp {snap} /tmp/shared/restore.snap && sha256sum < {snap} > /tmp/shared/restore.snap.sha256")
    spare.start()
    spare.wait_for_unit("openbao.service")
    spare.wait_for_open_port(8200, "127.0.0.1", timeout=120)
    spare_init = json.loads(
        bao(spare, "127.0.0.1:8200",
            "operator init -format=json -recovery-shares=1 -recovery-threshold=1")
    )
    # /v1/sys/health answers 200 only once the node is unsealed and active.
    spare.wait_until_succeeds(
        f"curl -sf --cacert {CACERT} https://127.0.0.1:8200/v1/sys/health", timeout=120
    )
    spare.succeed(
        "install -m 0600 /tmp/shared/restore.snap /root/restore.snap"
        " && test \"$(sha256sum < /root/restore.snap | cut -d' ' -f1)\""
        " = \"$(cut -d' ' -f1 /tmp/shared/restore.snap.sha256)\""
    )
    bao(spare, "127.0.0.1:8200", "operator raft snapshot restore -force /root/restore.snap",
        spare_init["root_token"])
    # The restored data is encrypted with the cluster's keys; the same static seal
    # key unseals it, and the cluster's root token reads what was written before.
    spare.wait_until_succeeds(
        f"BAO_ADDR=https://127.0.0.1:8200 BAO_CACERT={CACERT} BAO_TOKEN={root} "
        "bao kv get -field=v secret/t1 | grep -qx one",
        timeout=180,
    )
    spare.succeed("head -c2 /root/restore.snap | od -An -tx1 | grep -q '1f 8b'")
