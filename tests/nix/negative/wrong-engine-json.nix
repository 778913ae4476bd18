# expect: must read its TLS key
# Must fail (assertion): the OpenBao-rendered JSON reads its key from openbao.service's
# credentials, which do not exist for the vault unit.
{ lib, ... }:
{
  vaultnix.server.engine = lib.mkForce "vault";
}
