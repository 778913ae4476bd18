# One evaluation case per module concern: name -> list of modules added to vaultnix's
# modules. Each must evaluate with no failed assertions (tests/nix/eval.sh).
let
  contract = ../../docs/contract;

  machine = role: {
    vaultnix = {
      clusterName = "fixture";
      machine = {
        name = if role == "lb" then "lb" else "node1";
        inherit role;
        provider = "onprem";
        fqdn = "node1.vault.test";
      };
      pki.caCertFile = contract + "/pki/ca.crt";
    };
  };

  server = {
    vaultnix.server = {
      enable = true;
      settingsFile = ./fixtures/openbao-static.server.json;
      certFile = contract + "/pki/vault-1.crt";
      sealKeyFile = "/var/lib/vaultnix/secrets/seal.key";
    };
  };

  wireguard = {
    vaultnix.overlay = {
      kind = "wireguard";
      address = "10.77.0.1";
      peers = [
        {
          name = "node2";
          publicKey = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
          endpoint = "192.168.1.2:51820";
          allowedIPs = [ "10.77.0.2/32" ];
        }
      ];
    };
  };
in
{
  node-openbao-static-seal = [
    (machine "server")
    server
  ];

  node-vault-engine = [
    (machine "server")
    {
      vaultnix.server = {
        enable = true;
        engine = "vault";
        settingsFile = ./fixtures/vault.server.json;
        certFile = contract + "/pki/vault-1.crt";
      };
    }
  ];

  haproxy = [
    (machine "lb")
    {
      vaultnix.loadBalancer = {
        enable = true;
        configFile = contract + "/haproxy/haproxy.cfg";
      };
    }
  ];

  overlay-wireguard = [
    (machine "server")
    server
    wireguard
  ];

  overlay-tailscale = [
    (machine "server")
    server
    {
      vaultnix.overlay = {
        kind = "tailscale";
        authKeyFile = "/var/lib/vaultnix/secrets/tailscale-authkey";
        hostname = "node1";
      };
      # The tailnet is not trusted: the other servers are admitted by their tailnet address.
      vaultnix.firewall = {
        enable = true;
        clusterAllowedCIDRs = [ "100.64.0.2/32" ];
      };
    }
  ];

  firewall-no-overlay = [
    (machine "server")
    server
    {
      vaultnix.firewall = {
        enable = true;
        apiAllowedCIDRs = [
          "192.168.1.4/32"
          "2001:db8::/64"
        ];
        clusterAllowedCIDRs = [
          "192.168.1.2/32"
          "192.168.1.3/32"
        ];
        sshAllowedCIDRs = [ "192.0.2.0/24" ];
      };
    }
  ];

  firewall-wireguard = [
    (machine "server")
    server
    wireguard
    {
      vaultnix.firewall = {
        enable = true;
        apiAllowedCIDRs = [ "10.77.0.4/32" ];
      };
    }
  ];

  backup = [
    (machine "server")
    server
    {
      vaultnix.backup = {
        enable = true;
        configFile = contract + "/nodes/vault-1.backup.json";
      };
    }
  ];

  drain = [
    (machine "server")
    server
    wireguard
    {
      vaultnix.server.drain = {
        enable = true;
        configFile = contract + "/nodes/vault-1.drain.json";
      };
      # The drain agent's port: from the load balancer only.
      vaultnix.firewall = {
        enable = true;
        agentAllowedCIDRs = [ "10.88.0.10/32" ];
      };
    }
  ];

  monitoring = [
    (machine "server")
    server
    {
      vaultnix.monitoring = {
        enable = true;
        alertRulesFile = contract + "/monitoring/alerts.yml";
        configFile = contract + "/monitoring/prometheus.yml";
        metricsAllowedCIDRs = [ "192.168.1.1/32" ];
      };
      # The metrics port is admitted through vaultnix's firewall.
      vaultnix.firewall = {
        enable = true;
        clusterAllowedCIDRs = [ "192.168.1.2/32" ];
      };
    }
  ];

  hardening = [
    (machine "server")
    server
    {
      vaultnix.hardening = {
        enable = true;
        rootAuthorizedKeys = [
          "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGsJKmNrHyFKVs1u0G3VX9fx+p8iK9jYHs7a7JYF2Qdu admin@example"
        ];
      };
    }
  ];
}
