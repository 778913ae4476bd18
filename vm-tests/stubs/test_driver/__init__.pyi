# Typed stub of the NixOS test driver (nixpkgs nixos/lib/test-driver/src/test_driver): only what the
# vaultnix VM test scripts use and vm-tests/hosts_driver.py implements. See machine/__init__.pyi.
