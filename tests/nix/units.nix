# Unit-level checks of vaultnix's modules (tests/nix/eval.sh): ordering only on units that
# exist, no duplicate definitions of upstream serviceConfig keys, the engine version check,
# single-node machines without an overlay, and the flake's formatter.
# Returns a list of { name; ok; detail; }.
{
  subset,
  contract ? ../../docs/contract,
}:
let
  evalNode = modules: import ./eval-node.nix { inherit subset modules; };
  inherit (evalNode [ ]) lib;
  h = import ./helpers.nix { inherit lib; };

  modulesDir = toString ../../modules;
  isOurs = file: lib.hasPrefix modulesDir (toString file);

  # Units systemd itself ships (no NixOS option defines them); everything else a vaultnix
  # unit orders on must be defined in the evaluated configuration.
  systemdTargets = [
    "network.target"
    "network-online.target"
    "network-pre.target"
    "multi-user.target"
    "basic.target"
    "sysinit.target"
    "timers.target"
    "time-sync.target"
    "nss-lookup.target"
    "local-fs.target"
    "remote-fs.target"
  ];
  unitExists =
    config: u:
    let
      m = builtins.match "(.*)\\.(service|target|timer|socket|path|slice)" u;
      kind = builtins.elemAt m 1;
      set = {
        service = config.systemd.services;
        target = config.systemd.targets;
        timer = config.systemd.timers;
        socket = config.systemd.sockets;
        path = config.systemd.paths;
        slice = config.systemd.slices;
      };
    in
    builtins.elem u systemdTargets || (m != null && set.${kind} ? ${builtins.head m});

  depsOf =
    svc:
    lib.unique (
      lib.concatMap (k: svc.${k} or [ ]) [
        "after"
        "wants"
        "requires"
        "bindsTo"
        "requisite"
      ]
    );

  # The units vaultnix defines or orders: the server, haproxy, and vaultnix-* helpers.
  checkedUnits =
    config:
    lib.filterAttrs (
      n: _: builtins.elem n [ "openbao" "vault" "haproxy" ] || lib.hasPrefix "vaultnix-" n
    ) config.systemd.services;

  orderingCheck =
    label: modules:
    let
      r = evalNode modules;
      missing = lib.concatLists (
        lib.mapAttrsToList (
          n: svc:
          map (u: "${n}.service -> ${u}") (lib.filter (u: !unitExists r.config u) (depsOf svc))
        ) (checkedUnits r.config)
      );
    in
    h.check "${label}: every unit the server/LB units order on exists" (missing == [ ]) missing;

  node = n: contract + "/nodes/${n}.nix";
  oracle = ../../images/oracle.nix;

  tailscaleInteractive = {
    vaultnix.overlay = lib.mkForce {
      kind = "tailscale";
      authKeyFile = null;
    };
  };

  # --- duplicate serviceConfig definitions -------------------------------------------------
  # Plain (priority-100) definitions of serviceConfig keys of `svc`, per defining file.
  flatten =
    v:
    if builtins.isAttrs v && v ? _type then
      if v._type == "if" then
        (if v.condition then flatten v.content else [ ])
      else if v._type == "merge" then
        lib.concatMap flatten v.contents
      else if v._type == "override" then
        (if v.priority == 100 then flatten v.content else [ ])
      else
        [ ]
    else
      [ v ];
  serviceConfigKeys =
    svcName: def:
    lib.concatMap (
      top:
      lib.concatMap (
        s:
        lib.concatMap (
          sc: builtins.attrNames (lib.filterAttrs (_: v: !(v ? _type && v._type == "override" && v.priority != 100)) sc)
        ) (flatten (s.serviceConfig or { }))
      ) (flatten (top.${svcName} or { }))
    ) (flatten def.value);
  duplicateKeys =
    r:
    let
      defs = r.options.systemd.services.definitionsWithLocations;
      ours = lib.filter (d: isOurs d.file) defs;
      theirs = lib.filter (d: !isOurs d.file) defs;
      svcNames = lib.unique (lib.concatMap (d: builtins.attrNames d.value) ours);
    in
    lib.concatMap (
      s:
      let
        upstream = lib.unique (lib.concatMap (serviceConfigKeys s) theirs);
      in
      map (k: "${s}.serviceConfig.${k}") (
        lib.filter (k: builtins.elem k upstream) (lib.unique (lib.concatMap (serviceConfigKeys s) ours))
      )
    ) svcNames;
  duplicateCheck =
    label: modules:
    let
      d = duplicateKeys (evalNode modules);
    in
    h.check "${label}: no serviceConfig key defined by vaultnix and upstream at the same priority" (
      d == [ ]
    ) d;

  # --- engine version ---------------------------------------------------------------------
  versionOf =
    extra:
    let
      r = evalNode ([ (node "vault-1") ] ++ extra);
    in
    lib.filter (m: lib.hasInfix "was rendered for" m) r.failedAssertions;
  otherVersion =
    { pkgs, ... }:
    {
      services.openbao.package = pkgs.openbao // {
        version = "2.6.2";
      };
    };

  # --- single node without overlay --------------------------------------------------------
  singleNode = {
    vaultnix.overlay = lib.mkForce { kind = "none"; };
    vaultnix.firewall.clusterAllowedCIDRs = lib.mkForce [ ];
    vaultnix.server.singleNode = true;
  };

  # --- flake formatter --------------------------------------------------------------------
  flake = import ../../flake.nix;
  fakePkgs = import (subset + "/pkgs.nix") {
    inherit lib;
    extraPackageNames = [
      "nixfmt-tree"
      "nixfmt"
    ];
  };
  flakeOut = flake.outputs {
    self = flakeOut;
    nixpkgs = {
      inherit lib;
      legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] (_: fakePkgs);
    };
  };
  formatter = flakeOut.formatter.x86_64-linux;
in
[
  (orderingCheck "vault-2 with images/oracle.nix (networkd)" [
    (node "vault-2")
    oracle
  ])
  (h.check "vault-2 with images/oracle.nix: WireGuard comes from networkd (the case under test)" (
    let
      c = (evalNode [ (node "vault-2") oracle ]).config;
    in
    c.systemd.network.netdevs ? "40-wg0" && !(c.systemd.services ? "wireguard-wg0")
  ) null)
  (orderingCheck "vault-1 (scripted WireGuard)" [ (node "vault-1") ])
  (orderingCheck "vault-lb with images/oracle.nix" [
    (node "vault-lb")
    oracle
  ])
  (orderingCheck "vault-1 with interactive Tailscale (no auth key file)" [
    (node "vault-1")
    tailscaleInteractive
  ])
  (duplicateCheck "vault-1 (openbao)" [ (node "vault-1") ])
  (duplicateCheck "node-vault-engine" (import ./cases.nix).node-vault-engine)
  (h.check "engine version: rendered 2.7.2 vs package 2.6.2 fails with a clear message" (
    versionOf [ otherVersion ] != [ ]
  ) null)
  (h.check "engine version: equal versions pass" (versionOf [ ] == [ ]) (versionOf [ ]))
  (h.check "engine version: allowVersionMismatch lets a checked difference through" (
    versionOf [
      otherVersion
      { vaultnix.server.allowVersionMismatch = true; }
    ] == [ ]
  ) null)
  (h.check "single server without overlay: no failed assertion" (
    (evalNode [
      (node "vault-1")
      singleNode
    ]).failedAssertions == [ ]
  ) (evalNode [ (node "vault-1") singleNode ]).failedAssertions)
  (
    let
      c = (evalNode [ (node "vault-2") ]).config;
      v = c.vaultnix;
      listeners = lib.attrValues c.services.openbao.settings.listener;
      hostListeners = lib.filter (
        l: (l.cluster_address or null) == null && !(lib.hasPrefix "127." l.address) && !(lib.hasPrefix "${v.overlay.address}:" l.address)
      ) listeners;
      rules = c.networking.firewall.extraInputRules;
    in
    h.check "vault-2: client_cidrs reach the API (listener off the overlay + firewall admits them to the API port)" (
      hostListeners != [ ]
      && lib.all (l: lib.hasSuffix ":${toString v.server.apiPort}" l.address) hostListeners
      && lib.all (cidr: lib.hasInfix cidr rules) v.firewall.apiAllowedCIDRs
      && h.rulesMentionPort rules v.server.apiPort
    ) { inherit listeners rules; }
  )
  (h.check "flake formatter is nixfmt-tree (plain nixfmt hangs under `nix fmt` with no file)" (
    formatter.pname == "nixfmt-tree"
  ) formatter.pname)
]
