# expect: is not of type
# Must fail: apiPort is a port number, not a string.
{ lib, ... }:
{
  vaultnix.server.apiPort = lib.mkForce "8200";
}
