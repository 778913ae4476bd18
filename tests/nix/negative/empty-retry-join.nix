# expect: sets storage.raft.retry_join to an empty list
# Must fail: OpenBao exits at start on `retry_join = [ ]` ("invalid retry_join config"); a server
# that joins nobody leaves retry_join out (vm-tests/cluster.nix's spare once set it).
{ lib, pkgs, ... }:
let
  base = lib.importJSON ../../../docs/contract/nodes/vault-1.server.json;
in
{
  vaultnix.server.settingsFile = lib.mkForce (
    pkgs.writeText "vault-1.server.json" (
      builtins.toJSON (lib.recursiveUpdate base { storage.raft.retry_join = [ ]; })
    )
  );
}
