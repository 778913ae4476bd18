# What runNixOSTest gets from a VM test, without nixpkgs (for vm-tests/hosts_driver.py, which runs
# the script on the hosts lab): its testScript, exactly as Nix builds it, its machine names, the spec
# it generates from, what each `common.client` machine is configured with and the backup schedules
# the test's machines set. `common` is the real
# common.nix for testLib and secretLinks; its other functions are replaced by ones that return their
# arguments, which the lazy evaluation of these attributes never builds.
#   nix-instantiate --eval --strict --json vm-tests/test-script.nix --argstr test cluster
# With `gen` (a directory `vaultnix generate` wrote: the hosts lab's), `common.generate` stands for
# it, and `spareConfigs` gives what each spare machine (one not built by common.server,
# loadBalancer or client, that enables vaultnix.server itself) is configured with: its server JSON
# exactly as its settingsFile, certificate, CA, tmpfiles rules and credential files.
#   nix-instantiate --eval --strict --json vm-tests/test-script.nix --argstr test cluster --argstr gen DIR
{
  test,
  gen ? null,
}:
let
  real = import ./common.nix {
    pkgs = throw "test-script.nix evaluates without nixpkgs";
    vaultnix = throw "no vaultnix package here";
    vaultnixModules = throw "no modules here";
  };
  common = {
    inherit (real) testLib defaults secretLinks;
    generate =
      name: spec:
      {
        kind = "generated";
        inherit name spec;
      }
      // (if gen == null then { } else { outPath = gen; });
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
  # A spare (cluster.nix) also uses importJSON, optionalAttrs and recursiveUpdate (as nixpkgs' lib:
  # attribute sets merged recursively, anything else replaced) and pkgs.writeText.
  fakeLib = rec {
    mkForce = x: x;
    mkDefault = x: x;
    optionalAttrs = cond: as: if cond then as else { };
    importJSON = path: builtins.fromJSON (builtins.readFile path);
    recursiveUpdate =
      lhs: rhs:
      lhs
      // builtins.mapAttrs (
        k: v: if builtins.isAttrs v && builtins.isAttrs (lhs.${k} or null) then recursiveUpdate lhs.${k} v else v
      ) rhs;
  };
  fakePkgs = {
    writeText = name: text: { inherit name text; };
  };
  asAttrs =
    n:
    if builtins.isFunction n then
      n {
        lib = fakeLib;
        pkgs = fakePkgs;
        config = throw "test-script.nix: no config";
      }
    else
      n;
  isSpare =
    n:
    let
      a = asAttrs t.nodes.${n};
    in
    !(a ? kind) && !(a ? imports) && ((a.vaultnix or { }).server or { }) ? settingsFile;
  spares = builtins.filter isSpare (builtins.attrNames t.nodes);
  spareConfig =
    n:
    let
      a = asAttrs t.nodes.${n};
      s = a.vaultnix.server;
    in
    {
      settings = s.settingsFile.text;
      certFile = toString s.certFile;
      caCertFile = toString a.vaultnix.pki.caCertFile;
      keyFile = s.keyFile or null;
      sealKeyFile = s.sealKeyFile or null;
      tmpfiles = a.systemd.tmpfiles.rules or [ ];
    };
  backupOf = n: ((asAttrs t.nodes.${n}).vaultnix or { }).backup or { };
  # What a machine's test configuration sets for its backup timer (null: the generated module's).
  backupTimer =
    n:
    let
      b = backupOf n;
    in
    if b ? onCalendar || b ? randomizedDelaySec then
      {
        onCalendar = b.onCalendar or null;
        randomizedDelaySec = b.randomizedDelaySec or null;
      }
    else
      null;
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
  inherit spares;
  spareConfigs =
    if gen == null then
      { }
    else
      builtins.listToAttrs (
        map (n: {
          name = n;
          value = spareConfig n;
        }) spares
      );
  # Machines whose test configuration sets vaultnix.backup.onCalendar or .randomizedDelaySec (the
  # lab's --backup-timer and --backup-delay).
  backupTimers = builtins.listToAttrs (
    map (n: {
      name = n;
      value = backupTimer n;
    }) (builtins.filter (n: backupTimer n != null) (builtins.attrNames t.nodes))
  );
}
