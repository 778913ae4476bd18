# The vaultnix CLI. Tests are not run in the build (doCheck = false): most of them drive real
# `bao` and HAProxy processes on loopback and fetch pinned OpenBao binaries, which the Nix
# sandbox does not provide. They run in CI through ./scripts/test.sh instead.
{
  lib,
  rustPlatform,
}:
let
  fs = lib.fileset;
  manifest = lib.importTOML ../Cargo.toml;
in
rustPlatform.buildRustPackage {
  pname = "vaultnix";
  inherit (manifest.package) version;

  src = fs.toSource {
    root = ../.;
    fileset = fs.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../src
      ../templates
      (fs.maybeMissing ../build.rs)
      (fs.maybeMissing ../benches)
      (fs.maybeMissing ../tests)
    ];
  };

  cargoLock.lockFile = ../Cargo.lock;

  doCheck = false;

  meta = {
    inherit (manifest.package) description;
    homepage = "https://github.com/vaultnix/vaultnix";
    license = with lib.licenses; [
      mit
      asl20
    ];
    mainProgram = "vaultnix";
    platforms = lib.platforms.linux ++ lib.platforms.darwin;
  };
}
