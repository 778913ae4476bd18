# Who may reach what. With an overlay, the API and cluster ports are open on the overlay
# interface only (servers join and forward over it); the API port is additionally open to
# the load balancer and the configured client networks, the cluster port to nobody else.
# Without an overlay, peers are admitted by address (clusterAllowedCIDRs).
# Uses the nftables backend of the NixOS firewall (networking.firewall.extraInputRules).
{
  config,
  lib,
  ...
}:
let
  inherit (lib)
    mkEnableOption
    mkIf
    mkMerge
    mkOption
    optional
    types
    ;
  vlib = import ./lib.nix { inherit lib; };

  cfg = config.vaultnix.firewall;
  server = config.vaultnix.server;
  lb = config.vaultnix.loadBalancer;
  overlay = config.vaultnix.overlay;

  # The port `apiAllowedCIDRs` applies to: the server API, or a closed load-balancer frontend.
  apiPorts =
    optional server.enable server.apiPort ++ optional (lb.enable && !lb.openFirewall) lb.frontendPort;

  rules = lib.filter (r: r != "") [
    (lib.optionalString (cfg.apiAllowedCIDRs != [ ] && apiPorts != [ ]) (
      vlib.nftAcceptFrom {
        cidrs = cfg.apiAllowedCIDRs;
        ports = apiPorts;
        comment = "vaultnix: API from load balancer and clients";
      }
    ))
    (lib.optionalString (server.enable && cfg.clusterAllowedCIDRs != [ ]) (
      vlib.nftAcceptFrom {
        cidrs = cfg.clusterAllowedCIDRs;
        ports = [
          server.apiPort
          server.clusterPort
        ];
        comment = "vaultnix: raft peers by address";
      }
    ))
    (lib.optionalString (server.enable && server.drain.enable && cfg.agentAllowedCIDRs != [ ]) (
      vlib.nftAcceptFrom {
        cidrs = cfg.agentAllowedCIDRs;
        ports = [ server.drain.agentPort ];
        comment = "vaultnix: drain agent from the load balancer";
      }
    ))
    (lib.optionalString (cfg.sshAllowedCIDRs != [ ]) (
      vlib.nftAcceptFrom {
        cidrs = cfg.sshAllowedCIDRs;
        ports = [ cfg.sshPort ];
        comment = "vaultnix: ssh";
      }
    ))
  ];
in
{
  options.vaultnix.firewall = {
    enable = mkEnableOption "vaultnix's firewall rules (nftables)";

    apiAllowedCIDRs = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [
        "10.88.0.10/32"
        "192.0.2.0/24"
      ];
      description = ''
        Source networks admitted to the API port of a server (the load balancer's overlay
        address and the spec's client networks), or to the frontend of a load balancer whose
        {option}`vaultnix.loadBalancer.openFirewall` is `false`.
      '';
    };

    clusterAllowedCIDRs = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [
        "192.168.1.1/32"
        "192.168.1.2/32"
      ];
      description = ''
        Source networks admitted to both the API and the cluster port of a server, on any
        interface: the other servers' addresses. Needed when `vaultnix.overlay.kind` is `"none"`
        (host addresses) or `"tailscale"` (their tailnet addresses: a tailnet carries every device
        of the tailnet, so its interface is not trusted). With WireGuard leave it empty: the
        interface carries only the cluster's machines and is trusted for both.
      '';
    };

    agentAllowedCIDRs = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "10.88.0.10/32" ];
      description = ''
        Source networks admitted to a server's drain agent ({option}`vaultnix.server.drain.agentPort`,
        polled by HAProxy's agent-check) when {option}`vaultnix.server.drain.enable` is set: the load
        balancer's address only.
      '';
    };

    sshAllowedCIDRs = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = ''
        Source networks admitted to SSH. Empty: SSH stays open to everyone (key-only login,
        see {option}`vaultnix.hardening.enable`), which keeps cloud consoles usable.
      '';
    };

    sshPort = mkOption {
      type = types.port;
      default = 22;
      description = "SSH port restricted by {option}`sshAllowedCIDRs`.";
    };
  };

  config = mkIf cfg.enable (mkMerge [
    {
      assertions = [
        {
          assertion =
            server.enable && overlay.kind != "wireguard" && !server.singleNode -> cfg.clusterAllowedCIDRs != [ ];
          message = "vaultnix.firewall: without a WireGuard overlay (kind ${overlay.kind}), list the other servers in clusterAllowedCIDRs or raft cannot form (a one-server cluster sets vaultnix.server.singleNode).";
        }
      ];

      networking.firewall.enable = true;
      networking.nftables.enable = true;
      networking.firewall.extraInputRules = mkIf (rules != [ ]) (lib.concatStringsSep "\n" rules);
      services.openssh.openFirewall = mkIf (cfg.sshAllowedCIDRs != [ ]) (lib.mkDefault false);
    }

    # Only WireGuard's interface is trusted: its peers are exactly the cluster's machines. A tailnet
    # carries every device of the tailnet; members are admitted by address (clusterAllowedCIDRs,
    # apiAllowedCIDRs) there.
    (mkIf (server.enable && overlay.kind == "wireguard") {
      networking.firewall.interfaces.${overlay.interface}.allowedTCPPorts = [
        server.apiPort
        server.clusterPort
      ];
    })
  ]);
}
