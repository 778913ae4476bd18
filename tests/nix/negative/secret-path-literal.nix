# expect: absolute path outside the Nix store
# Must fail: a Nix path literal would copy the key into the store; secrets are strings.
{ lib, ... }:
{
  vaultnix.overlay.privateKeyFile = lib.mkForce ./secret-in-store.nix;
}
