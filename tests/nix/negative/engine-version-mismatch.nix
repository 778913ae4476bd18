# expect: rendered for openbao 2.7.2
# Must fail (assertion): the deployed package's version differs from the rendered one.
{ pkgs, ... }:
{
  services.openbao.package = pkgs.openbao // {
    version = "2.6.2";
  };
}
