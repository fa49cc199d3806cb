// The demo's simulated node (scripts/demo.sh), written by the shared builder
// (test/helpers/simnode.ts): `node scripts/demo-node.mjs ROOT` lays out the --root tree with
// VM 107 "web" (firewall=1 NIC) and CT 108 "dns", their rules and pve-nat.conf.
import { importTs } from "./import-ts.mjs";

const root = process.argv[2];
if (!root) {
  process.stderr.write("usage: node scripts/demo-node.mjs ROOT\n");
  process.exit(2);
}
const { natConf, writeNode } = await importTs("test/helpers/simnode.ts");

await writeNode({
  root,
  config: natConf({ comment: "/etc/pve-nat/pve-nat.conf — everything else is the default" }),
  guests: [
    {
      vmid: 107,
      kind: "qemu",
      conf: [
        "name: web",
        "memory: 2048",
        "net0: virtio=BC:24:11:00:00:6B,bridge=vmbr1,firewall=1",
        "ipconfig0: ip=10.10.10.107/24,gw=10.10.10.1",
        "hookscript: local:snippets/pve-nat-hook",
        "",
      ].join("\n"),
      fw: [
        "[OPTIONS]",
        "enable: 1",
        "",
        "[RULES]",
        "IN ACCEPT -source 198.51.100.7 -p tcp -dport 22 # NAT:822 ssh, from the office only",
        "OUT ACCEPT -dest 198.51.100.20 -p tcp -dport 443 # NAT https to the remote server",
        "IN ACCEPT -p tcp -dport 443 # plain firewall rule, no NAT",
        "",
      ].join("\n"),
    },
    {
      vmid: 108,
      kind: "lxc",
      conf: [
        "hostname: dns",
        "memory: 512",
        "net0: name=eth0,bridge=vmbr1,gw=10.10.10.1,hwaddr=BC:24:11:00:00:6C,ip=10.10.10.108/24,type=veth",
        "hookscript: local:snippets/pve-nat-hook",
        "",
      ].join("\n"),
      fw: [
        "[OPTIONS]",
        "enable: 1",
        "",
        "[RULES]",
        "IN ACCEPT -p udp -dport 53 # NAT:5353 dns",
        "",
      ].join("\n"),
    },
  ],
});
