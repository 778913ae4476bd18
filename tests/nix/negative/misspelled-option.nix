# expect: vaultnix.server.settingFile' does not exist
# Must fail: `settingFile' is not an option of vaultnix.server.
{ vaultnix.server.settingFile = ../../../docs/contract/nodes/vault-1.server.json; }
