# The load balancer: HAProxy in TCP mode passing TLS through to the active server only
# (health check GET /v1/sys/health expects 200, which only the active node answers).
# The configuration is rendered by `vaultnix generate` (haproxy/haproxy.cfg) and deployed as is.
{
  config,
  lib,
  ...
}:
let
  inherit (lib)
    literalExpression
    mkEnableOption
    mkIf
    mkOption
    types
    ;

  cfg = config.vaultnix.loadBalancer;
  haproxyConfig = builtins.readFile cfg.configFile;
in
{
  options.vaultnix.loadBalancer = {
    enable = mkEnableOption "the vaultnix HAProxy load balancer on this machine";

    configFile = mkOption {
      type = types.path;
      example = literalExpression "../haproxy/haproxy.cfg";
      description = ''
        The HAProxy configuration rendered by `vaultnix generate`. The NixOS module puts a
        short `global` section (the master socket for seamless reloads) in front of it; the
        rendered file opens its own `global` section, and HAProxy merges both.
      '';
    };

    holdScript = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = literalExpression "../haproxy/hold.lua";
      description = ''
        The Lua action rendered by `vaultnix generate` (haproxy/hold.lua) that holds new
        connections while no server is UP; installed as /etc/haproxy/vaultnix-hold.lua, the
        path the rendered configuration's `lua-load` names.
      '';
    };

    frontendPort = mkOption {
      type = types.port;
      default = 8200;
      description = "Port clients connect to (TLS passthrough to the active server).";
    };

    statsPort = mkOption {
      type = types.nullOr types.port;
      default = 8404;
      description = "Port of HAProxy's read-only statistics page; `null` if the configuration has none.";
    };

    openFirewall = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Whether to open {option}`frontendPort` and {option}`statsPort` to everyone. Set it to
        `false` to admit only {option}`vaultnix.firewall.apiAllowedCIDRs` to the frontend.
      '';
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = config.vaultnix.machine.role == "lb";
        message = "vaultnix.loadBalancer.enable is set on ${config.vaultnix.machine.name}, whose role is ${config.vaultnix.machine.role}.";
      }
      {
        assertion = lib.hasInfix ":${toString cfg.frontendPort}" haproxyConfig;
        message = "vaultnix: ${toString cfg.configFile} binds no frontend on port ${toString cfg.frontendPort} (vaultnix.loadBalancer.frontendPort).";
      }
    ];

    services.haproxy = {
      enable = true;
      config = haproxyConfig;
    };

    environment.etc."haproxy/vaultnix-hold.lua" = mkIf (cfg.holdScript != null) {
      source = cfg.holdScript;
    };

    systemd.services.haproxy = {
      # A changed configuration is picked up by a hot reload (USR2 to the master, which
      # re-reads /etc/haproxy.cfg) instead of a restart that would drop connections.
      reloadTriggers = [
        config.environment.etc."haproxy.cfg".source
      ]
      ++ lib.optional (cfg.holdScript != null) config.environment.etc."haproxy/vaultnix-hold.lua".source;
      wants = config.vaultnix.overlay.readyUnits;
      after = config.vaultnix.overlay.readyUnits;
    };

    networking.firewall.allowedTCPPorts = mkIf cfg.openFirewall (
      [ cfg.frontendPort ] ++ lib.optional (cfg.statsPort != null) cfg.statsPort
    );
  };
}
