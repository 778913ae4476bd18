# Helpers shared by vaultnix's NixOS modules. Not a module itself: import it with
# `import ./lib.nix { inherit lib; }`.
{ lib }:
rec {
  # A secret is referenced by an absolute path *string* on the host. A Nix path literal
  # (./tls.key) is not a string and fails the type check, so it can never be copied into
  # the world-readable store by accident; a string pointing into the store is rejected too.
  isSecretPath =
    p: builtins.isString p && lib.hasPrefix "/" p && !lib.hasPrefix "${builtins.storeDir}/" p;

  secretPath = lib.types.addCheck lib.types.str isSecretPath // {
    name = "secretPath";
    description = "absolute path outside the Nix store (a string, never a Nix path literal)";
    descriptionClass = "noun";
  };

  # "10.0.0.0/8" -> "ip", "fd00::/8" -> "ip6" (the nftables address family keyword).
  nftFamily = cidr: if lib.hasInfix ":" cidr then "ip6" else "ip";

  # nftables rules accepting TCP `ports` from `cidrs`, one rule per address family.
  nftAcceptFrom =
    {
      cidrs,
      ports,
      comment,
    }:
    let
      byFamily = lib.groupBy nftFamily cidrs;
      portSet = "{ ${lib.concatMapStringsSep ", " toString ports} }";
    in
    lib.concatStringsSep "\n" (
      lib.mapAttrsToList (
        family: cs:
        ''${family} saddr { ${lib.concatStringsSep ", " cs} } tcp dport ${portSet} accept comment "${comment}"''
      ) byFamily
    );

  # The engine's systemd unit and directory name.
  unitOf = engine: if engine == "vault" then "vault" else "openbao";
}
