# The private network between the servers and the load balancer: WireGuard (one interface,
# a full mesh of peers), Tailscale, or none (servers talk over the plain network, e.g. one
# on-prem LAN). Raft (the cluster port) only ever listens on this overlay.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib)
    literalExpression
    mkIf
    mkMerge
    mkOption
    types
    ;
  vlib = import ./lib.nix { inherit lib; };

  cfg = config.vaultnix.overlay;
  wgNetworkd = cfg.kind == "wireguard" && config.networking.wireguard.useNetworkd;

  peerModule = {
    options = {
      name = mkOption {
        type = types.strMatching "[a-zA-Z0-9][a-zA-Z0-9-]*";
        example = "vault-2";
        description = "Machine name of the peer (names the per-peer systemd unit).";
      };
      publicKey = mkOption {
        type = types.singleLineStr;
        example = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
        description = "WireGuard public key of the peer.";
      };
      endpoint = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "203.0.113.20:51820";
        description = "Public `address:port` of the peer; `null` if only the peer connects to us.";
      };
      allowedIPs = mkOption {
        type = types.listOf types.str;
        example = [ "10.88.0.2/32" ];
        description = "Overlay addresses routed to the peer.";
      };
    };
  };
in
{
  options.vaultnix.overlay = {
    kind = mkOption {
      type = types.enum [
        "none"
        "wireguard"
        "tailscale"
      ];
      default = "none";
      description = "Which overlay network connects the machines of the cluster.";
    };

    interface = mkOption {
      type = types.nullOr types.str;
      default =
        {
          none = null;
          wireguard = "wg0";
          tailscale = "tailscale0";
        }
        .${cfg.kind};
      defaultText = literalExpression ''"wg0" for wireguard, "tailscale0" for tailscale, null for none'';
      description = "Network interface of the overlay; the cluster port is opened on it only.";
    };

    address = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "10.88.0.1";
      description = "This machine's overlay address (WireGuard; informational for Tailscale).";
    };

    prefixLength = mkOption {
      type = types.ints.between 0 128;
      default = 24;
      description = "Prefix length of the overlay subnet.";
    };

    listenPort = mkOption {
      type = types.port;
      default = 51820;
      description = "UDP port WireGuard listens on.";
    };

    privateKeyFile = mkOption {
      type = vlib.secretPath;
      default = "${config.vaultnix.secretsDir}/wg.key";
      defaultText = literalExpression ''"''${config.vaultnix.secretsDir}/wg.key"'';
      description = "WireGuard private key on the host (never in the store).";
    };

    persistentKeepalive = mkOption {
      type = types.nullOr types.ints.unsigned;
      default = 25;
      description = "Keepalive interval in seconds for every peer (keeps NAT mappings open); `null` disables it.";
    };

    peers = mkOption {
      type = types.listOf (types.submodule peerModule);
      default = [ ];
      description = "The other machines of the cluster (WireGuard full mesh).";
    };

    authKeyFile = mkOption {
      type = types.nullOr vlib.secretPath;
      default = null;
      example = "/var/lib/vaultnix/secrets/tailscale-authkey";
      description = "Tailscale auth key on the host; `null` to log in interactively.";
    };

    hostname = mkOption {
      type = types.nullOr types.str;
      default = null;
      description = "Name of this machine on the tailnet (`tailscale up --hostname`).";
    };

    openFirewall = mkOption {
      type = types.bool;
      default = true;
      description = "Whether to open the overlay's UDP port (WireGuard listenPort or Tailscale's port).";
    };

    readyUnits = mkOption {
      type = types.listOf types.str;
      readOnly = true;
      internal = true;
      # Only units that exist in this configuration: networking.wireguard with networkd (the
      # OCI profile turns networking.useNetworkd on) makes a netdev and no wireguard-<if>
      # unit, and services.tailscale has its autoconnect unit only with an auth key file.
      default =
        {
          none = [ ];
          wireguard =
            if wgNetworkd then [ "vaultnix-overlay-ready.service" ] else [ "wireguard-${cfg.interface}.service" ];
          tailscale =
            if cfg.authKeyFile != null then [ "tailscaled-autoconnect.service" ] else [ "tailscaled.service" ];
        }
        .${cfg.kind};
      defaultText = literalExpression ''
        wireguard: [ "wireguard-<interface>.service" ], or [ "vaultnix-overlay-ready.service" ] with networkd;
        tailscale: [ "tailscaled-autoconnect.service" ] with an auth key file, else [ "tailscaled.service" ]'';
      description = "systemd units that bring the overlay up; services bound to overlay addresses order after them.";
    };
  };

  config = mkMerge [
    (mkIf (cfg.kind == "wireguard") {
      assertions = [
        {
          assertion = cfg.address != null && cfg.interface != null;
          message = "vaultnix.overlay: kind wireguard needs `address` and `interface`.";
        }
      ];

      networking.wireguard.interfaces.${cfg.interface} = {
        ips = [ "${cfg.address}/${toString cfg.prefixLength}" ];
        inherit (cfg) listenPort privateKeyFile;
        peers = map (p: {
          inherit (p)
            name
            publicKey
            endpoint
            allowedIPs
            ;
          inherit (cfg) persistentKeepalive;
        }) cfg.peers;
      };

      # The WireGuard module does not open its port itself.
      networking.firewall.allowedUDPPorts = mkIf cfg.openFirewall [ cfg.listenPort ];
    })

    # With networkd the interface is a netdev that systemd-networkd configures on its own
    # schedule; this unit is done once the interface carries its (global-scope) overlay
    # address, so listeners bound to that address can start after it.
    (mkIf wgNetworkd {
      systemd.services.vaultnix-overlay-ready = {
        description = "vaultnix: wait for the overlay address on ${cfg.interface}";
        wants = [ "systemd-networkd.service" ];
        after = [ "systemd-networkd.service" ];
        serviceConfig = {
          Type = "oneshot";
          RemainAfterExit = true;
          ExecStart = "${pkgs.systemd}/lib/systemd/systemd-networkd-wait-online --interface=${cfg.interface}:routable --timeout=120";
        };
      };
    })

    (mkIf (cfg.kind == "tailscale") {
      services.tailscale = {
        enable = true;
        interfaceName = cfg.interface;
        inherit (cfg) authKeyFile openFirewall;
        extraUpFlags = lib.optional (cfg.hostname != null) "--hostname=${cfg.hostname}";
      };
    })
  ];
}
