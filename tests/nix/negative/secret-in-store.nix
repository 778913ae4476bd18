# expect: absolute path outside the Nix store
# Must fail: a secret must never point into the Nix store.
{ lib, ... }:
{
  vaultnix.server.keyFile = lib.mkForce "/nix/store/00000000000000000000000000000000-tls.key";
}
