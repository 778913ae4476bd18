# expect: clusterAllowedCIDRs
# Must fail (assertion): without an overlay the other servers must be admitted by address.
{ lib, ... }:
{
  vaultnix.overlay.kind = lib.mkForce "none";
}
