# The provider profile of a machine (images/<provider>.nix) as the nixpkgs-subset fixture can
# evaluate it: { modules; missing; }. `missing` lists the upstream modules the profile imports
# (modulesPath + "/...") that the fixture does not carry; the harness reports such a machine as
# skipped (tier (a), real nixpkgs, evaluates it) instead of evaluating less than it claims.
{
  subset,
  provider,
}:
let
  inherit ((import (subset + "/eval.nix") { modules = [ ]; })) lib;
  profile = ../../images + "/${provider}.nix";
  modulesPath = toString (subset + "/nixos/modules");
  declared = import profile {
    inherit lib modulesPath;
    config = { };
    pkgs = { };
  };
  missing = lib.filter (p: !builtins.pathExists p) (map toString (declared.imports or [ ]));
in
{
  modules = if missing == [ ] then [ profile ] else [ ];
  missing = map (lib.removePrefix (modulesPath + "/")) missing;
}
