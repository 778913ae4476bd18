# Evaluates vaultnix's modules plus `modules` against the nixpkgs-subset fixture, with
# undeclared names below `vaultnix` rejected like those below services.openbao & co.
{
  subset,
  modules,
  system ? "x86_64-linux",
}:
import (subset + "/eval.nix") {
  inherit system;
  modules = [ ../../modules ] ++ modules;
  extraPackageNames = [ "prometheus" ];
  strictPrefixes = [
    [
      "services"
      "openbao"
    ]
    [
      "services"
      "vault"
    ]
    [
      "services"
      "haproxy"
    ]
    [
      "services"
      "tailscale"
    ]
    [
      "networking"
      "wireguard"
    ]
    [ "vaultnix" ]
  ];
}
