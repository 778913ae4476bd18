# Assertion helpers for the evaluation tests. Each check is { name; ok; detail; }; `detail`
# explains a failure and is only forced when the check fails.
{ lib }:
rec {
  check = name: ok: detail: { inherit name ok detail; };

  isStorePath = p: lib.hasPrefix "${builtins.storeDir}/" (toString p);

  # Every secret a machine refers to must be an absolute path string outside the store.
  secretPathProblems =
    paths:
    lib.filter (p: !(builtins.isString p && lib.hasPrefix "/" p && !isStorePath p)) (
      lib.filter (p: p != null) paths
    );

  # "tls.key:/var/lib/vaultnix/secrets/tls.key" -> "/var/lib/vaultnix/secrets/tls.key"
  credentialSource =
    entry:
    let
      m = builtins.match "[^:]+:(.*)" entry;
    in
    if m == null then entry else builtins.head m;

  # LoadCredential sources of every systemd service (upstream wireguard-networkd.nix defines
  # a list of lists for systemd-networkd).
  allCredentialSources =
    services:
    lib.concatMap (
      svc: map credentialSource (lib.flatten (svc.serviceConfig.LoadCredential or [ ]))
    ) (lib.attrValues services);

  # TCP ports opened on every interface, and per interface.
  globalTcpPorts = fw: fw.allowedTCPPorts or [ ];
  interfaceTcpPorts = fw: lib.mapAttrs (_: i: i.allowedTCPPorts or [ ]) (fw.interfaces or { });

  # Does an nftables rule text accept `port` (as a dport)?
  rulesMentionPort =
    rules: port:
    builtins.match ".*dport [{]?[^}]*[^0-9]${toString port}([^0-9].*|$)" (
      builtins.replaceStrings [ "\n" ] [ " " ] rules
    ) != null;

  # Forces what a configuration defines, the way a NixOS build would, and nothing else:
  # walks `options` next to `config`. Declared options are forced only when visible, not
  # internal and defined (a definition or a default: `isDefined`); upstream's removed-option
  # declarations (mkRemovedOptionModule: visible = false, a value that throws) and options
  # without a definition are never forced. Values of the free-form catch-all (names that no
  # option declares) are forced as they are, since they exist only because a module defined
  # them. Returns { forced = [ "a.b.c" ]; broken = [ "a.b.c" ]; } where `broken` lists the values
  # whose deep evaluation throws (errors that are not throws abort the whole evaluation,
  # which the harness reports as a failure too).
  forceDefined =
    options: config:
    let
      show = path: lib.concatStringsSep "." path;
      # Module source (deferredModule, e.g. image.modules) is evaluated where it is imported,
      # not as a value.
      isModuleType = t: t.name == "deferredModule" || (t.nestedTypes ? elemType && isModuleType t.nestedTypes.elemType);
      forcible =
        o:
        (o.visible or true) != false
        && !(o.internal or false)
        && (o.isDefined or false)
        && !(isModuleType o.type);
      # system.build.images: each image variant is a configuration of its own (extendModules
      # over image.modules); a toplevel build never forces them, and evaluating them needs
      # nixpkgs' image modules. Tier (a) of tests/nix/run.sh evaluates each machine's image.
      notForced = [
        [
          "system"
          "build"
          "images"
        ]
      ];
      go =
        path: opts: cfg:
        lib.concatMap (
          n:
          let
            p = path ++ [ n ];
          in
          if builtins.elem p notForced then
            [ ]
          else if !(opts ? ${n}) then
            [ p ]
          else if lib.isOption opts.${n} then
            lib.optional (forcible opts.${n}) p
          else if builtins.isAttrs cfg.${n} then
            go p opts.${n} cfg.${n}
          else
            [ p ]
        ) (lib.filter (n: n != "_module") (builtins.attrNames cfg));
      forced = go [ ] options config;
    in
    {
      forced = map show forced;
      broken = map show (
        lib.filter (
          p: !(builtins.tryEval (builtins.deepSeq (lib.getAttrFromPath p config) true)).success
        ) forced
      );
    };
}
