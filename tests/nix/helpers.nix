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

  # LoadCredential sources of every systemd service.
  allCredentialSources =
    services:
    lib.concatMap (
      svc: map credentialSource (lib.toList (svc.serviceConfig.LoadCredential or [ ]))
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
}
