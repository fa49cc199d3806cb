// A simulated Proxmox node in network namespaces (SPEC §7), for end-to-end tests and the demo.
//
//   clientA 198.51.100.7 ─┐
//   clientB 198.51.100.8 ─┼─ br0 [inet: router 198.51.100.1 / 203.0.113.1] ─ up0
//   remote  198.51.100.20─┘                                                 │
//                                                                           eno1
//   [node] vmbr0 203.0.113.10/24 (public)      vmbr1 10.10.10.1/24 (guests' gateway)
//          plain NIC:      tap<vmid>i0 ──────────────────────────────── vmbr1
//          firewall=1 NIC: tap<vmid>i0 ── fwbr<vmid>i0 ── fwln<vmid>i0 ═ fwpr<vmid>p0 ── vmbr1
//   [guest <vmid>] eth0 10.10.10.x/24, default via 10.10.10.1
//
// The router has no route to 10.10.10.0/24: a guest packet that leaves un-NATed gets no answer.
// Every namespace is named pvenat-<role>-<random>; destroy() kills what runs in them and deletes them.
// The --root tree and the run state come from test/helpers/simnode.ts.
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { inject } from "vitest";
import {
  type Background,
  inNetns,
  type RunOptions,
  type RunResult,
  run,
  runOk,
  spawnBackground,
  waitFor,
} from "../helpers/exec.js";
import {
  configPath,
  GATEWAY,
  type GuestKind,
  guestConf,
  guestMac,
  makeStore,
  NODE_NAME,
  natConf,
  pvePath,
  replaceFile,
  startGuest,
  stopGuest,
  storeCommit,
  vmlistText,
  writeGuest,
  writeNode,
} from "../helpers/simnode.js";
import { type ProbeResult, TCP_PROBE, UDP_PROBE, UDP_SERVICE } from "./probe.js";

export const ADDR = {
  public: "203.0.113.10",
  router: "203.0.113.1",
  routerLan: "198.51.100.1",
  clientA: "198.51.100.7",
  clientB: "198.51.100.8",
  remote: "198.51.100.20",
  gateway: GATEWAY,
} as const;

const REPO = path.resolve(import.meta.dirname, "../..");

export interface GuestSpec {
  vmid: number;
  kind?: GuestKind;
  /** Defaults to 10.10.10.<vmid % 250> (2 added below 2). */
  ip?: string;
  /** Plumb the NIC behind fwbr/fwln/fwpr exactly as Proxmox does for firewall=1. */
  firewall?: boolean;
  /** Write the guest's Proxmox .conf under the root (default true). */
  writeConf?: boolean;
  /** Create the host-side NIC devices now (default true); else call plug() at "start". */
  plug?: boolean;
  /** No static address: the guest's eth0 stays unaddressed (a DHCP client configures it), and
   *  its Proxmox config has `ip=dhcp`. */
  dhcp?: boolean;
}

export interface Guest {
  vmid: number;
  kind: GuestKind;
  ip: string;
  firewall: boolean;
  /** The guest's namespace. */
  ns: string;
  /** Host side of the guest NIC: tap<vmid>i0 (qemu) or veth<vmid>i0 (lxc). */
  hostIf: string;
  /** fwbr<vmid>i0 for firewall=1, else null. */
  fwbr: string | null;
  mac: string;
  /** The guest gets its address from DHCP (ip is then only the config's placeholder). */
  dhcp: boolean;
}

export interface SimNodeOptions {
  /** net.ipv4.ip_forward=1 in the node namespace (default true). */
  ipForward?: boolean;
  /** net.bridge.bridge-nf-call-iptables=1 in the node namespace (default true, as on Proxmox). */
  bridgeNf?: boolean;
  /** Extra pve-nat.conf lines. */
  config?: string;
  /** The node has what pmxcfs adds on a real one: its guest list (/etc/pve/.vmlist, a guest's
   *  version bumped when its config is written) and its store (config.db, which every write
   *  through this harness under /etc/pve commits to first, as pmxcfs does). The daemon then
   *  leaves the guests' files alone while the store is still (src/pve/store.ts; the single
   *  executable only). Default false: every file is polled. */
  pmxcfs?: boolean;
}

export interface Probe {
  timeoutMs?: number;
  /** Bytes to send after connecting (TCP) / the datagram (UDP). */
  send?: string;
  /** UDP source port. */
  sport?: number;
}

export interface SimNode {
  readonly suffix: string;
  /** The --root directory (a temp dir with etc/pve, etc/pve-nat, run, var/run). */
  readonly root: string;
  readonly ns: { inet: string; clientA: string; clientB: string; remote: string; node: string };
  readonly guests: Map<number, Guest>;

  exec(ns: string, argv: string[], opts?: RunOptions): Promise<RunResult>;
  execOk(ns: string, argv: string[], opts?: RunOptions): Promise<string>;
  /** A tracked background process inside ns (killed by destroy()). */
  spawn(ns: string, argv: string[], opts?: { env?: NodeJS.ProcessEnv }): Background;

  addGuest(spec: GuestSpec): Promise<Guest>;
  plug(vmid: number): Promise<void>;
  unplug(vmid: number): Promise<void>;
  /** Simulated run state (SPEC §7): qemu pidfile + process with `-pidfile <path>`, LXC abstract socket. */
  setRunning(
    vmid: number,
    running: boolean,
    opts?: { keepPidfile?: boolean; kind?: GuestKind },
  ): Promise<void>;

  /** socat TCP service answering "<banner> from=<peer address>\n" to every connection. */
  tcpService(ns: string, port: number, banner: string): Promise<Background>;
  /** UDP service answering "<banner> from=<peer address>\n" to every datagram. */
  udpService(ns: string, port: number, banner: string): Promise<Background>;
  tcpProbe(fromNs: string, addr: string, port: number, opts?: Probe): Promise<ProbeResult>;
  udpProbe(fromNs: string, addr: string, port: number, opts?: Probe): Promise<ProbeResult>;

  iptables(ns: string, args: string[]): Promise<string>;
  iptablesSave(ns: string, table: "nat" | "raw" | "filter", counters?: boolean): Promise<string>;
  sysctl(ns: string, key: string, value?: string): Promise<string>;
  flushArp(ns: string): Promise<void>;
  flushConntrack(ns: string): Promise<void>;
  neighbours(ns: string): Promise<string>;
  macOf(ns: string, dev: string): Promise<string>;
  /** Packets the remote server received from 10.10.10.0/24 (un-NATed) and from the public address. */
  remoteSeen(): Promise<{ fromGuestNet: number; fromPublic: number }>;

  /** Writes a file under root/etc/pve (relative path, e.g. "firewall/107.fw"). */
  writePve(rel: string, text: string): Promise<void>;
  removePve(rel: string): Promise<void>;
  writeConfig(text: string): Promise<void>;

  /** argv prefix for pve-nat (PVE_NAT_BIN or `node dist/pve-nat.cjs`), without --root. */
  pveNatArgv(): string[];
  /** Runs `pve-nat <args> --root <root>` in the node namespace. */
  pveNat(args: string[], opts?: RunOptions): Promise<RunResult>;
  startDaemon(extraArgs?: string[]): Background;

  /** Another cluster node sharing this node's /etc/pve (as pmxcfs shares it): its own namespace
   *  (vmbr0 with `address`, no uplink), its own --root for /etc/pve-nat, /run and /var/run, and
   *  root/etc/pve a link to this node's tree. Destroyed with this node. */
  addPeerNode(node: string, address: string): Promise<PeerNode>;

  destroy(): Promise<void>;
}

export interface PeerNode {
  node: string;
  ns: string;
  root: string;
  /** Runs `pve-nat <args> --root <root>` in the peer's namespace. */
  pveNat(args: string[], opts?: RunOptions): Promise<RunResult>;
  startDaemon(extraArgs?: string[]): Background;
}

const IFACE = /^[a-z][a-z0-9]{0,14}$/;
const BANNER = /^[A-Za-z0-9._-]{1,64}$/;

/** pve-nat as the tests run it: PVE_NAT_BIN, else the bundle global-setup built for this run. */
export function pveNatArgv(): string[] {
  const bin = process.env.PVE_NAT_BIN;
  if (bin) return [bin];
  const bundle = inject("pveNatBundle");
  return [process.execPath, bundle || path.join(REPO, "dist/pve-nat.cjs")];
}

export function baseConfig(extra = ""): string {
  return natConf({ comment: "simulated node (test harness)", extra });
}

export async function createSimNode(opts: SimNodeOptions = {}): Promise<SimNode> {
  const suffix = randomBytes(3).toString("hex");
  const name = (role: string) => `pvenat-${role}-${suffix}`;
  const ns = {
    inet: name("inet"),
    clientA: name("cla"),
    clientB: name("clb"),
    remote: name("rem"),
    node: name("node"),
  };
  const created: string[] = [];
  const peerRoots: string[] = [];
  const background: Background[] = [];
  const guests = new Map<number, Guest>();
  const runState = new Map<number, Background>();
  const root = await mkdtemp(path.join(tmpdir(), "pvenat-root-"));

  /** pmxcfs's side of a write under /etc/pve (see SimNodeOptions.pmxcfs; without the store
   *  a no-op): the commit comes before the change is visible. */
  const commit = () => storeCommit(root);
  let vmlistVersion = 0;
  const vmlistIds: Record<number, [string, GuestKind, number]> = {};
  async function writeVmlist(): Promise<void> {
    await replaceFile(pvePath(root, ".vmlist"), vmlistText(++vmlistVersion, vmlistIds));
  }

  const nsx = inNetns;
  const exec = (n: string, argv: string[], o?: RunOptions) => run(nsx(n, argv), o);
  const execOk = (n: string, argv: string[], o?: RunOptions) => runOk(nsx(n, argv), o);
  const ip = (n: string, ...args: string[]) => runOk(["ip", "-n", n, ...args]);
  const sysctl = async (n: string, key: string, value?: string) =>
    (
      await execOk(n, [
        "sysctl",
        "-n",
        ...(value === undefined ? [key] : ["-w", `${key}=${value}`]),
      ])
    ).trim();

  const addNs = async (n: string) => {
    await runOk(["ip", "netns", "add", n]);
    created.push(n);
    await ip(n, "link", "set", "lo", "up");
    // No IPv6: keeps link-local chatter (and ND) out of the cold-start scenarios.
    await sysctl(n, "net.ipv6.conf.all.disable_ipv6", "1");
    await sysctl(n, "net.ipv6.conf.default.disable_ipv6", "1");
  };
  const addBridge = async (n: string, br: string) => {
    await ip(n, "link", "add", br, "type", "bridge", "stp_state", "0", "forward_delay", "0");
    await ip(n, "link", "set", br, "up");
  };
  const vethPair = async (nA: string, a: string, nB: string, b: string) => {
    await ip(nA, "link", "add", a, "type", "veth", "peer", "name", b, "netns", nB);
  };

  const spawnIn = (n: string, argv: string[], o: { env?: NodeJS.ProcessEnv } = {}) => {
    const b = spawnBackground(nsx(n, argv), o);
    background.push(b);
    return b;
  };

  const destroy = async () => {
    const errors: string[] = [];
    for (const b of background) await b.kill9().catch((e) => errors.push(String(e)));
    for (const n of created.reverse()) {
      // Anything still inside (socat children, a daemon started by hand) dies with the namespace.
      const pids = (await run(["ip", "netns", "pids", n])).stdout.split(/\s+/).filter(Boolean);
      for (const pid of pids) {
        try {
          process.kill(Number(pid), "SIGKILL");
        } catch {
          // gone
        }
      }
      const r = await run(["ip", "netns", "del", n]);
      if (r.code !== 0) errors.push(`ip netns del ${n}: ${r.stderr.trim()}`);
    }
    created.length = 0;
    for (const r of peerRoots) await rm(r, { recursive: true, force: true });
    await rm(root, { recursive: true, force: true });
    if (errors.length > 0) throw new Error(`destroy: ${errors.join("; ")}`);
  };

  try {
    for (const n of Object.values(ns)) await addNs(n);

    // The "internet": a router with the remote clients' LAN and the node's uplink net.
    await addBridge(ns.inet, "br0");
    await ip(ns.inet, "addr", "add", `${ADDR.routerLan}/24`, "dev", "br0");
    await sysctl(ns.inet, "net.ipv4.ip_forward", "1");
    const hosts: Array<[string, string, string]> = [
      [ns.clientA, "pa", ADDR.clientA],
      [ns.clientB, "pb", ADDR.clientB],
      [ns.remote, "pr", ADDR.remote],
    ];
    for (const [n, port, addr] of hosts) {
      await vethPair(ns.inet, port, n, "eth0");
      await ip(ns.inet, "link", "set", port, "master", "br0", "up");
      await ip(n, "addr", "add", `${addr}/24`, "dev", "eth0");
      await ip(n, "link", "set", "eth0", "up");
      await ip(n, "route", "add", "default", "via", ADDR.routerLan);
    }

    // The node: vmbr0 bridges the uplink NIC and holds the public address, vmbr1 the guests.
    await addBridge(ns.node, "vmbr0");
    await vethPair(ns.node, "eno1", ns.inet, "up0");
    await ip(ns.node, "link", "set", "eno1", "master", "vmbr0", "up");
    await ip(ns.node, "addr", "add", `${ADDR.public}/24`, "dev", "vmbr0");
    await ip(ns.inet, "addr", "add", `${ADDR.router}/24`, "dev", "up0");
    await ip(ns.inet, "link", "set", "up0", "up");
    await ip(ns.node, "route", "add", "default", "via", ADDR.router);
    await addBridge(ns.node, "vmbr1");
    await ip(ns.node, "addr", "add", `${ADDR.gateway}/24`, "dev", "vmbr1");
    if (opts.ipForward !== false) await sysctl(ns.node, "net.ipv4.ip_forward", "1");
    if (opts.bridgeNf !== false) {
      await sysctl(ns.node, "net.bridge.bridge-nf-call-iptables", "1");
    }

    // What reaches the remote server, counted before anything else sees it.
    for (const src of ["10.10.10.0/24", ADDR.public]) {
      await execOk(ns.remote, ["iptables", "-w", "-t", "raw", "-A", "PREROUTING", "-s", src]);
    }

    await writeNode({ root, config: baseConfig(opts.config) });
    if (opts.pmxcfs) {
      await makeStore(root);
      await writeVmlist();
    }
  } catch (err) {
    await destroy().catch(() => {});
    throw err;
  }

  const link = (n: string, dev: string) => run(["ip", "-n", n, "link", "show", "dev", dev]);

  /** Host side of the guest NIC, as qemu/lxc create it at start (between pre- and post-start). */
  const plug = async (vmid: number) => {
    const g = guests.get(vmid);
    if (!g) throw new Error(`plug: no guest ${vmid}`);
    if ((await link(ns.node, g.hostIf)).code === 0) return;
    await vethPair(ns.node, g.hostIf, g.ns, "eth0");
    await ip(g.ns, "link", "set", "eth0", "address", g.mac);
    if (g.fwbr) {
      // Proxmox's create_firewall_bridge_linux: fwbr (settings copied from the bridge), the
      // fwln/fwpr veth pair with fwpr on vmbr1 and fwln on fwbr, then the guest's tap on fwbr.
      const fwln = `fwln${vmid}i0`;
      const fwpr = `fwpr${vmid}p0`;
      await addBridge(ns.node, g.fwbr);
      await ip(ns.node, "link", "add", fwln, "type", "veth", "peer", "name", fwpr);
      await ip(ns.node, "link", "set", fwln, "up");
      await ip(ns.node, "link", "set", fwpr, "up");
      await ip(ns.node, "link", "set", fwpr, "master", "vmbr1");
      await ip(ns.node, "link", "set", fwln, "master", g.fwbr);
      await ip(ns.node, "link", "set", g.hostIf, "master", g.fwbr);
    } else {
      await ip(ns.node, "link", "set", g.hostIf, "master", "vmbr1");
    }
    await ip(ns.node, "link", "set", g.hostIf, "up", "promisc", "on");
    await ip(g.ns, "link", "set", "eth0", "up");
    if (g.dhcp) return;
    await ip(g.ns, "addr", "add", `${g.ip}/24`, "dev", "eth0");
    await ip(g.ns, "route", "add", "default", "via", ADDR.gateway);
  };

  /** Removes the host-side devices, as a guest stop does (the guest's eth0 goes with its peer). */
  const unplug = async (vmid: number) => {
    const g = guests.get(vmid);
    if (!g) throw new Error(`unplug: no guest ${vmid}`);
    for (const dev of [g.hostIf, `fwln${vmid}i0`, g.fwbr]) {
      if (dev && (await link(ns.node, dev)).code === 0) await ip(ns.node, "link", "del", dev);
    }
  };

  const addGuest = async (spec: GuestSpec): Promise<Guest> => {
    const kind = spec.kind ?? "qemu";
    const vmid = spec.vmid;
    const last = vmid % 250;
    const ipAddr = spec.ip ?? `10.10.10.${last < 2 ? last + 2 : last}`;
    const firewall = spec.firewall === true;
    const hostIf = `${kind === "qemu" ? "tap" : "veth"}${vmid}i0`;
    const fwbr = firewall ? `fwbr${vmid}i0` : null;
    for (const i of [hostIf, fwbr ?? "x"]) if (!IFACE.test(i)) throw new Error(`bad ifname ${i}`);
    const g: Guest = {
      vmid,
      kind,
      ip: ipAddr,
      firewall,
      ns: name(`g${vmid}`),
      hostIf,
      fwbr,
      mac: guestMac(vmid),
      dhcp: spec.dhcp === true,
    };
    await addNs(g.ns);
    guests.set(vmid, g);
    if (spec.plug !== false) await plug(vmid);
    if (spec.writeConf !== false) {
      const conf = guestConf(g.dhcp ? { ...g, ip: "dhcp" } : g);
      await commit();
      await writeGuest(root, { vmid, kind, conf });
      if (opts.pmxcfs) {
        vmlistIds[vmid] = [NODE_NAME, kind, (vmlistIds[vmid]?.[2] ?? 0) + 1];
        await writeVmlist();
      }
    }
    return g;
  };

  const setRunning = async (
    vmid: number,
    running: boolean,
    o: { keepPidfile?: boolean; kind?: GuestKind } = {},
  ) => {
    const kind = guests.get(vmid)?.kind ?? o.kind ?? "qemu";
    const prev = runState.get(vmid);
    if (!running) {
      runState.delete(vmid);
      await stopGuest({ root, vmid, kind, process: prev, keepPidfile: o.keepPidfile });
      return;
    }
    if (prev?.alive()) return;
    await startGuest({
      root,
      vmid,
      kind,
      ns: ns.node,
      track: (b) => {
        background.push(b);
        runState.set(vmid, b);
      },
    });
  };

  const waitListening = async (n: string, proto: "tcp" | "udp", port: number) => {
    const flag = proto === "tcp" ? "-Hltn" : "-Hlun";
    const ok = await waitFor(
      async () => (await exec(n, ["ss", flag, `sport = :${port}`])).stdout.trim() !== "",
      3000,
      20,
    );
    if (!ok) throw new Error(`${proto}/${port} not listening in ${n}`);
  };

  const service = async (n: string, proto: "tcp" | "udp", port: number, banner: string) => {
    if (!BANNER.test(banner)) throw new Error(`bad banner ${banner}`);
    const b =
      proto === "tcp"
        ? spawnIn(n, [
            "socat",
            `TCP-LISTEN:${port},fork,reuseaddr`,
            `SYSTEM:echo ${banner} from=$SOCAT_PEERADDR`,
          ])
        : spawnIn(n, [process.execPath, "-e", UDP_SERVICE], {
            env: { ...process.env, SERVICE_PORT: String(port), SERVICE_BANNER: banner },
          });
    await waitListening(n, proto, port);
    return b;
  };

  const probe = async (
    script: string,
    fromNs: string,
    addr: string,
    port: number,
    o: Probe = {},
  ): Promise<ProbeResult> => {
    const ms = o.timeoutMs ?? 2000;
    const env = {
      ...process.env,
      PROBE_ADDR: addr,
      PROBE_PORT: String(port),
      PROBE_MS: String(ms),
      PROBE_SEND: o.send ?? "",
      PROBE_SPORT: o.sport ? String(o.sport) : "",
    };
    const r = await exec(fromNs, [process.execPath, "-e", script], { env, timeoutMs: ms + 5000 });
    const line = r.stdout.trim().split("\n").pop() ?? "";
    try {
      return JSON.parse(line) as ProbeResult;
    } catch {
      return { status: "error", data: "", local: null, error: `probe: ${r.stderr || r.stdout}` };
    }
  };

  const cli = (args: string[]) => [...pveNatArgv(), ...args, "--root", root];

  const addPeerNode = async (node: string, address: string): Promise<PeerNode> => {
    const peerNs = name(`n-${node}`.slice(0, 8));
    await addNs(peerNs);
    await addBridge(peerNs, "vmbr0");
    await ip(peerNs, "addr", "add", `${address}/24`, "dev", "vmbr0");
    const peerRoot = await mkdtemp(path.join(tmpdir(), `pvenat-root-${node}-`));
    peerRoots.push(peerRoot);
    for (const d of ["etc/pve-nat", "var/run/qemu-server", "run"]) {
      await mkdir(path.join(peerRoot, d), { recursive: true });
    }
    // One /etc/pve for both nodes, as pmxcfs shows every node the same tree.
    await symlink(path.join(root, "etc/pve"), path.join(peerRoot, "etc/pve"));
    await mkdir(pvePath(root, `nodes/${node}/qemu-server`), { recursive: true });
    await mkdir(pvePath(root, `nodes/${node}/lxc`), { recursive: true });
    await writeFile(
      configPath(peerRoot),
      natConf({ comment: `cluster peer ${node}`, node, settings: { public_address: address } }),
    );
    const peerCli = (args: string[]) => [...pveNatArgv(), ...args, "--root", peerRoot];
    return {
      node,
      ns: peerNs,
      root: peerRoot,
      pveNat: (args, o) => exec(peerNs, peerCli(args), o),
      startDaemon: (extra = []) => spawnIn(peerNs, peerCli(["daemon", ...extra])),
    };
  };

  return {
    suffix,
    root,
    ns,
    guests,
    exec,
    execOk,
    spawn: spawnIn,
    addGuest,
    plug,
    unplug,
    setRunning,
    tcpService: (n, port, banner) => service(n, "tcp", port, banner),
    udpService: (n, port, banner) => service(n, "udp", port, banner),
    tcpProbe: (fromNs, addr, port, o) => probe(TCP_PROBE, fromNs, addr, port, o),
    udpProbe: (fromNs, addr, port, o) => probe(UDP_PROBE, fromNs, addr, port, o),
    iptables: (n, args) => execOk(n, ["iptables", "-w", ...args]),
    iptablesSave: (n, table, counters) =>
      execOk(n, ["iptables-save", "-t", table, ...(counters ? ["-c"] : [])]),
    sysctl,
    async flushArp(n) {
      await ip(n, "neigh", "flush", "all");
    },
    async flushConntrack(n) {
      await exec(n, ["conntrack", "-F"]);
    },
    neighbours: (n) => ip(n, "neigh", "show"),
    async macOf(n, dev) {
      const out = await ip(n, "-br", "link", "show", "dev", dev);
      return out.trim().split(/\s+/)[2] ?? "";
    },
    async remoteSeen() {
      const out = await execOk(ns.remote, [
        "iptables",
        "-w",
        "-t",
        "raw",
        "-L",
        "PREROUTING",
        "-nvx",
      ]);
      const count = (src: string) => {
        const line = out.split("\n").find((l) => l.trim().split(/\s+/)[6] === src);
        return Number(line?.trim().split(/\s+/)[0] ?? 0);
      };
      return { fromGuestNet: count("10.10.10.0/24"), fromPublic: count(ADDR.public) };
    },
    async writePve(rel, text) {
      await commit();
      await replaceFile(pvePath(root, rel), text);
    },
    async removePve(rel) {
      await commit();
      await rm(pvePath(root, rel), { force: true });
    },
    async writeConfig(text) {
      await writeFile(configPath(root), text);
    },
    pveNatArgv,
    pveNat: (args, o) => exec(ns.node, cli(args), o),
    startDaemon: (extra = []) => spawnIn(ns.node, cli(["daemon", ...extra])),
    addPeerNode,
    destroy,
  };
}
