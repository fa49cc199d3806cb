import { describe, expect, it } from "vitest";
import type { GuestConf, GuestNic } from "../../../src/model.js";
import { parseGuestConf } from "../../../src/pve/guestconf.js";

const QEMU_FILE = "nodes/pve1/qemu-server/107.conf";
const LXC_FILE = "nodes/pve1/lxc/105.conf";

const nic = (index: number, over: Partial<GuestNic> = {}): GuestNic => ({
  index,
  bridge: null,
  firewall: false,
  ip: null,
  mac: null,
  gw: null,
  ...over,
});

// As qemu-server writes it: description lines first, then sorted keys, then snapshots.
const QEMU_CLOUDINIT = `#web server
#second description line
agent: 1
boot: order=scsi0;net0
cores: 2
hookscript: local:snippets/pve-nat-hook
ide2: local-lvm:vm-107-cloudinit,media=cdrom
ipconfig0: ip=10.10.10.107/24,gw=10.10.10.1
ipconfig1: ip=dhcp,ip6=auto
memory: 2048
meta: creation-qemu=8.1.5,ctime=1712345678
name: web
net0: virtio=BC:24:11:2A:3B:4C,bridge=vmbr1,firewall=1
net1: e1000=BC:24:11:2A:3B:4D,bridge=vmbr2
net2: virtio=BC:24:11:2A:3B:4E,bridge=vmbr1,firewall=0,tag=20
parent: before-upgrade
scsi0: local-lvm:vm-107-disk-0,size=32G
smbios1: uuid=6c2b5a0e-0000-4000-8000-000000000107
vmgenid: 0b1f0000-0000-4000-8000-000000000000

[before-upgrade]
ipconfig0: ip=10.10.10.99/24,gw=10.10.10.1
name: web-old
net0: virtio=BC:24:11:2A:3B:4C,bridge=vmbr0
net3: virtio=BC:24:11:2A:3B:4F,bridge=vmbr0
snaptime: 1712345000
`;

describe("parseGuestConf qemu", () => {
  it("reads name, NICs with cloud-init addresses and the hookscript; ignores snapshots", () => {
    expect(parseGuestConf(QEMU_CLOUDINIT, 107, "qemu", QEMU_FILE)).toEqual<GuestConf>({
      vmid: 107,
      kind: "qemu",
      file: QEMU_FILE,
      name: "web",
      nics: [
        nic(0, {
          bridge: "vmbr1",
          firewall: true,
          ip: "10.10.10.107/24",
          gw: "10.10.10.1",
          mac: "bc:24:11:2a:3b:4c",
        }),
        nic(1, { bridge: "vmbr2", ip: "dhcp", mac: "bc:24:11:2a:3b:4d" }),
        nic(2, { bridge: "vmbr1", mac: "bc:24:11:2a:3b:4e" }),
      ],
      hookscript: "local:snippets/pve-nat-hook",
      agent: true,
      diagnostics: [],
    });
  });

  it.each<[string, string, Partial<GuestConf>]>([
    ["no NIC, no name", "memory: 512\n", { name: null, nics: [] }],
    [
      "NIC without cloud-init",
      "name: a\nnet0: virtio=BC:24:11:00:00:01,bridge=vmbr0,firewall=1\n",
      { name: "a", nics: [nic(0, { bridge: "vmbr0", firewall: true, mac: "bc:24:11:00:00:01" })] },
    ],
    [
      "model without MAC, link down, rate",
      "net0: virtio,bridge=vmbr1,link_down=1,rate=10\n",
      { nics: [nic(0, { bridge: "vmbr1" })] },
    ],
    [
      "ipconfig without a NIC is ignored",
      "ipconfig3: ip=10.10.10.3/24\nnet0: virtio=BC:24:11:00:00:01,bridge=vmbr0\n",
      { nics: [nic(0, { bridge: "vmbr0", mac: "bc:24:11:00:00:01" })] },
    ],
    [
      "ipconfig with only IPv6",
      "ipconfig0: ip6=2001:db8::5/64,gw6=2001:db8::1\nnet0: virtio=BC:24:11:00:00:01,bridge=vmbr0\n",
      { nics: [nic(0, { bridge: "vmbr0", mac: "bc:24:11:00:00:01" })] },
    ],
    [
      "NICs sorted by index, gaps kept",
      "net10: virtio=A,bridge=vmbr10\nnet2: virtio=B,bridge=vmbr2\n",
      { nics: [nic(2, { bridge: "vmbr2" }), nic(10, { bridge: "vmbr10" })] },
    ],
    [
      "[PENDING] changes are not current",
      "name: now\nnet0: virtio=A,bridge=vmbr0\n\n[PENDING]\nname: later\nnet0: virtio=A,bridge=vmbr1,firewall=1\n",
      { name: "now", nics: [nic(0, { bridge: "vmbr0" })] },
    ],
    [
      "[special:cloudinit] is not current",
      "ipconfig0: ip=10.10.10.7/24\nnet0: virtio=A,bridge=vmbr1\n\n[special:cloudinit]\nipconfig0: ip=10.10.10.8/24\n",
      { nics: [nic(0, { bridge: "vmbr1", ip: "10.10.10.7/24" })] },
    ],
    ["lxc hostname key means nothing for qemu", "hostname: x\n", { name: null }],
  ])("%s", (_title, text, expected) => {
    expect(parseGuestConf(text, 107, "qemu", QEMU_FILE)).toEqual({
      vmid: 107,
      kind: "qemu",
      file: QEMU_FILE,
      name: null,
      nics: [],
      hookscript: null,
      agent: false,
      diagnostics: [],
      ...expected,
    });
  });

  it("an unparsable line is a warning, the rest is still read", () => {
    const conf = parseGuestConf(
      "name: a\nthis is not a key\nnet0: virtio=A,bridge=vmbr0\n",
      107,
      "qemu",
      QEMU_FILE,
    );
    expect(conf.name).toBe("a");
    expect(conf.nics).toEqual([nic(0, { bridge: "vmbr0" })]);
    expect(conf.diagnostics).toEqual([
      {
        file: QEMU_FILE,
        line: 2,
        severity: "warning",
        message: 'cannot parse guest config line "this is not a key" (ignored)',
      },
    ]);
  });

  it("never throws on binary junk", () => {
    const conf = parseGuestConf("\0\u0001\uFFFD:::\n[", 107, "qemu", QEMU_FILE);
    expect(conf.nics).toEqual([]);
  });
});

const LXC = `#db container
arch: amd64
cores: 1
features: nesting=1
hostname: db
hookscript: local:snippets/pve-nat-hook
memory: 512
net0: name=eth0,bridge=vmbr1,firewall=1,gw=10.10.10.1,hwaddr=BC:24:11:5E:6F:70,ip=10.10.10.5/24,type=veth
net1: name=eth1,bridge=vmbr2,hwaddr=BC:24:11:5E:6F:71,ip=dhcp,ip6=auto,type=veth
net2: name=eth2,bridge=vmbr3,hwaddr=BC:24:11:5E:6F:72,ip=manual,type=veth
net3: name=eth3,bridge=vmbr4,hwaddr=BC:24:11:5E:6F:73,ip6=2001:db8::5/64,type=veth
ostype: debian
rootfs: local-lvm:vm-105-disk-0,size=8G
swap: 512
unprivileged: 1
lxc.apparmor.profile: unconfined
lxc.cgroup2.devices.allow: c 10:200 rwm

[vzdump]
#vzdump backup snapshot
hostname: db-snap
net0: name=eth0,bridge=vmbr0,ip=10.10.10.55/24,type=veth
snapstate: prepare
`;

describe("parseGuestConf: NIC MACs and the guest agent", () => {
  it.each([
    ["agent: 1", true],
    ["agent: 0", false],
    ["agent: enabled=1,fstrim_cloned_disks=1", true],
    ["agent: 1,type=virtio", true],
    ["agent: enabled=0", false],
    ["", false],
  ])("%s → agent %s", (line, agent) => {
    expect(
      parseGuestConf(`${line}\nnet0: virtio=BC:24:11:00:00:01,bridge=vmbr1\n`, 1, "qemu", QEMU_FILE)
        .agent,
    ).toBe(agent);
  });

  it.each([
    ["net0: virtio=BC:24:11:AA:BB:CC,bridge=vmbr1", "qemu", "bc:24:11:aa:bb:cc"],
    ["net0: e1000=bc:24:11:aa:bb:cd,bridge=vmbr1", "qemu", "bc:24:11:aa:bb:cd"],
    ["net0: virtio,bridge=vmbr1,macaddr=BC:24:11:AA:BB:CE", "qemu", "bc:24:11:aa:bb:ce"],
    ["net0: virtio,bridge=vmbr1", "qemu", null],
    ["net0: name=eth0,bridge=vmbr1,hwaddr=BC:24:11:AA:BB:CF,ip=dhcp", "lxc", "bc:24:11:aa:bb:cf"],
    ["net0: name=eth0,bridge=vmbr1,ip=dhcp", "lxc", null],
  ] as const)("%s → %s", (line, kind, mac) => {
    expect(parseGuestConf(`${line}\n`, 1, kind, QEMU_FILE).nics[0]?.mac).toBe(mac);
  });
});

describe("parseGuestConf lxc", () => {
  it("reads hostname, NICs with ip= (dhcp, manual, none) and the hookscript", () => {
    expect(parseGuestConf(LXC, 105, "lxc", LXC_FILE)).toEqual<GuestConf>({
      vmid: 105,
      kind: "lxc",
      file: LXC_FILE,
      name: "db",
      nics: [
        nic(0, {
          bridge: "vmbr1",
          firewall: true,
          ip: "10.10.10.5/24",
          gw: "10.10.10.1",
          mac: "bc:24:11:5e:6f:70",
        }),
        nic(1, { bridge: "vmbr2", ip: "dhcp", mac: "bc:24:11:5e:6f:71" }),
        nic(2, { bridge: "vmbr3", ip: "manual", mac: "bc:24:11:5e:6f:72" }),
        nic(3, { bridge: "vmbr4", mac: "bc:24:11:5e:6f:73" }),
      ],
      hookscript: "local:snippets/pve-nat-hook",
      agent: false,
      diagnostics: [],
    });
  });

  it("qemu's name key and ipconfigN mean nothing for lxc", () => {
    const conf = parseGuestConf(
      "name: x\nipconfig0: ip=10.10.10.9/24\nnet0: name=eth0,bridge=vmbr0,type=veth\n",
      105,
      "lxc",
      LXC_FILE,
    );
    expect(conf.name).toBeNull();
    expect(conf.nics).toEqual([nic(0, { bridge: "vmbr0" })]);
  });

  it.each([
    ["firewall=1", true],
    ["firewall=on", true],
    ["firewall=yes", true],
    ["firewall=0", false],
    ["firewall=off", false],
    ["", false],
  ])("%j → firewall %s", (flag, expected) => {
    const conf = parseGuestConf(`net0: name=eth0,bridge=vmbr0,${flag}\n`, 105, "lxc", LXC_FILE);
    expect(conf.nics[0]?.firewall).toBe(expected);
  });
});
