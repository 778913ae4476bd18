# The cluster of cluster-wireguard.toml: raft, joins and the load balancer's health checks run
# over a WireGuard mesh (wg0, 10.77.0.0/24); clients reach the load balancer on eth1.
#   - the mesh comes up from the generated keys and peers
#   - the cluster forms over wg0: 3 voters, 1 active; the client writes through the LB
#   - the cluster port answers on wg0 only, not on eth1
{ common }:
let
  gen = common.generate "vmtest-wg" ./cluster-wireguard.toml;
  server = name: common.server gen name { };
in
{
  name = "vaultnix-wireguard";

  inherit (common) defaults;

  nodes = {
    client = common.client gen "192.168.1.2" "vault.vault.test";
    lb = common.loadBalancer gen "lb";
    node1 = server "node1";
    node2 = server "node2";
    node3 = server "node3";
  };

  testScript = common.testLib + builtins.readFile ./wireguard.py;
}
