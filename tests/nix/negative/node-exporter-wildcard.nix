# expect: must not listen on every address
# Must fail: the node exporter (textfile metrics, unauthenticated) never listens on every address.
{ lib, ... }:
{
  vaultnix.monitoring.nodeExporterAddress = lib.mkForce "0.0.0.0";
}
