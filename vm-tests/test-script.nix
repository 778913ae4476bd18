# What runNixOSTest gets from a VM test, without nixpkgs (for vm-tests/hosts_driver.py, which runs
# the script on the hosts lab): its testScript, exactly as Nix builds it, its machine names, the spec
# it generates from, what each `common.client` machine is configured with and the backup schedules
# the test's machines set. `common` is the real
# common.nix for testLib; its functions are replaced by ones that return their arguments, which the
# lazy evaluation of these attributes never builds.
#   nix-instantiate --eval --strict --json vm-tests/test-script.nix --argstr test cluster
{ test }:
let
  real = import ./common.nix {
    pkgs = throw "test-script.nix evaluates without nixpkgs";
    vaultnix = throw "no vaultnix package here";
    vaultnixModules = throw "no modules here";
  };
  common = {
    inherit (real) testLib defaults;
    generate = name: spec: {
      kind = "generated";
      inherit name spec;
    };
    server = gen: name: _extra: {
      kind = "server";
      inherit gen name;
    };
    loadBalancer = gen: name: {
      kind = "loadBalancer";
      inherit gen name;
    };
    client = gen: lbAddress: hostname: {
      kind = "client";
      inherit gen lbAddress hostname;
    };
  };
  t = import (./. + "/${test}.nix") { inherit common; };
  described = builtins.filter (n: builtins.isAttrs n && n ? gen) (builtins.attrValues t.nodes);
  specs = map (n: toString n.gen.spec) described;
  spec = builtins.head specs;
  # A machine given as a module function (node1 in cluster.nix) is called with the lib functions
  # such a module uses on vaultnix.backup; the rest of its value is never forced.
  fakeLib = {
    mkForce = x: x;
    mkDefault = x: x;
  };
  asAttrs =
    n:
    if builtins.isFunction n then
      n {
        lib = fakeLib;
        pkgs = throw "test-script.nix: no pkgs";
        config = throw "test-script.nix: no config";
      }
    else
      n;
  backupCalendar = n: ((asAttrs t.nodes.${n}).vaultnix or { }).backup.onCalendar or null;
in
assert builtins.all (s: s == spec) specs;
{
  inherit (t) name testScript;
  nodes = builtins.attrNames t.nodes;
  inherit spec;
  clients = map (n: {
    name = n;
    inherit (t.nodes.${n}) lbAddress hostname;
  }) (builtins.filter (n: (t.nodes.${n}.kind or "") == "client") (builtins.attrNames t.nodes));
  # Machines whose test configuration sets vaultnix.backup.onCalendar (the lab's --backup-timer).
  backupCalendars = builtins.listToAttrs (
    map (n: {
      name = n;
      value = backupCalendar n;
    }) (builtins.filter (n: backupCalendar n != null) (builtins.attrNames t.nodes))
  );
}
