import type {
  Diagnostic,
  Forward,
  FwFile,
  GuestConf,
  GuestNic,
  NatPlan,
  NatRule,
  NodeInput,
  Owner,
  OwnerChains,
  RunState,
} from "../model.js";
import {
  compareKeys,
  expandGuest,
  expandNode,
  IFACE,
  uniqueDiagnostics,
  zoneFix,
} from "./compile.js";
import { settleStates } from "./conflicts.js";
import type { Candidate } from "./expand.js";
import { type Settled, settleFast, settleTables, validPorts } from "./settle.js";

// compile() for the daemon, where one event changes one guest: each guest's candidate forwards
// are kept and re-expanded only when what they depend on changed (its conf, .fw and run state;
// cluster.fw, pve-nat.conf and the public address for everyone; the error lines of the files its
// rules come from). Settling conflicts and protected ports stays global but linear (settle.ts).
// Unchanged forwards and owner chains keep their object identity from one plan to the next, so
// the renderer can cache per owner (daemon/rendercache.ts). Plans are never mutated afterwards.
// The result deep-equals compile(input) (test/unit/nat/incremental.test.ts).

export interface Compiler {
  compile(input: NodeInput): NatPlan;
}

interface GuestSlot {
  conf: GuestConf;
  fw: FwFile | null;
  state: RunState;
  /** Files its rules come from, with the error lines they had (rejected rules). */
  deps: Array<[file: string, sig: string]>;
  cands: Candidate[];
  diags: Diagnostic[];
  /** Every claim fits settle.ts's port tables. */
  fast: boolean;
  /** The Forward last emitted per candidate (reused while its state and reason stay). */
  out: Array<Forward | undefined>;
}

interface NodeSlot {
  host: FwFile | null;
  /** Every local guest's conf, by vmid (their NICs are hairpin networks). */
  confs: Array<GuestConf | undefined>;
  deps: Array<[file: string, sig: string]>;
  cands: Candidate[];
  diags: Diagnostic[];
  fast: boolean;
  out: Array<Forward | undefined>;
}

/** The last settling: a pure function of the candidate lists and of these inputs. */
interface Settling {
  segments: Candidate[][];
  config: NodeInput["config"];
  hostPorts: readonly number[];
  publicAddress: string | null;
  diags: Diagnostic[];
  forwards: Forward[];
  chains: OwnerChains[];
}

interface Segment {
  owner: Owner;
  cands: Candidate[];
  out: Array<Forward | undefined>;
}

interface Shared {
  config: NodeInput["config"];
  publicAddress: string | null;
  cluster: FwFile | null;
}

interface ChainSlot {
  cands: Candidate[];
  indices: number[];
  chains: OwnerChains;
}

/** Files of every rule rulesOf() looks at for this .fw (its own and its security groups'). */
function ruleFiles(fw: FwFile, cluster: FwFile | null): string[] {
  const files = new Set<string>();
  for (const rule of fw.rules) {
    files.add(rule.file);
    if (rule.type !== "group" || !rule.enabled) continue;
    for (const r of cluster?.groups[rule.action.toLowerCase()]?.rules ?? []) files.add(r.file);
  }
  return [...files];
}

function sortByKey(cands: Candidate[]): Candidate[] {
  return cands.sort((a, b) => compareKeys(a.key, b.key));
}

function claimsFit(cands: readonly Candidate[]): boolean {
  for (const c of cands) if (c.claim !== null && !validPorts(c.claim.ports)) return false;
  return true;
}

export function createCompiler(): Compiler {
  let shared: Shared | null = null;
  const guests = new Map<number, GuestSlot>();
  const outChains = new Map<Owner, ChainSlot>();
  const tables = settleTables();
  let nodeSlot: NodeSlot | null = null;
  let last: Settling | null = null;

  let lastPlan: { input: NodeInput; plan: NatPlan } | null = null;

  function compile(input: NodeInput): NatPlan {
    // The daemon's source hands out the same (unmutated) object while nothing changed.
    if (lastPlan?.input === input) return lastPlan.plan;
    const plan = build(input);
    lastPlan = { input, plan };
    return plan;
  }

  function build(input: NodeInput): NatPlan {
    const { config } = input;
    const sharedNow: Shared = {
      config,
      publicAddress: input.publicAddress,
      cluster: input.cluster,
    };
    const sharedChanged =
      shared === null ||
      shared.config !== sharedNow.config ||
      shared.publicAddress !== sharedNow.publicAddress ||
      shared.cluster !== sharedNow.cluster;
    shared = sharedNow;

    const diags: Diagnostic[] = [...input.diagnostics];
    for (const fw of [input.cluster, input.host]) if (fw) diags.push(...fw.diagnostics);
    const vmids = Object.keys(input.guests)
      .map(Number)
      .sort((a, b) => a - b);
    const localNics: GuestNic[] = [];
    for (const vmid of vmids) {
      const g = input.guests[vmid];
      if (!g) continue;
      diags.push(...g.conf.diagnostics, ...(g.fw?.diagnostics ?? []));
      localNics.push(...g.conf.nics);
    }

    // Error lines per file: a rule at such a line is not applied (compile's `rejected`).
    const rejectedLines = new Map<string, number[]>();
    const rejected = new Set<string>();
    for (const d of diags) {
      if (d.severity !== "error") continue;
      rejected.add(`${d.file}:${d.line}`);
      let lines = rejectedLines.get(d.file);
      if (!lines) {
        lines = [];
        rejectedLines.set(d.file, lines);
      }
      lines.push(d.line);
    }
    const sigs = new Map<string, string>();
    const sig = (file: string): string => {
      let s = sigs.get(file);
      if (s === undefined) {
        const lines = rejectedLines.get(file);
        s = lines ? [...new Set(lines)].sort((a, b) => a - b).join(",") : "";
        sigs.set(file, s);
      }
      return s;
    };

    const base = { config, publicAddress: input.publicAddress, localNics };
    const expDiags: Diagnostic[] = [];

    // The node's own forwards (host.fw, cluster.fw) also depend on every local NIC (hairpin
    // target networks): re-expanded when any guest config changed.
    const confs = vmids.map((v) => input.guests[v]?.conf);
    const nodeFresh =
      nodeSlot !== null &&
      !sharedChanged &&
      nodeSlot.host === input.host &&
      nodeSlot.confs.length === confs.length &&
      nodeSlot.confs.every((c, i) => c === confs[i]) &&
      nodeSlot.deps.every(([file, s]) => sig(file) === s);
    if (!nodeFresh || nodeSlot === null) {
      const own: Diagnostic[] = [];
      const nodeCands = expandNode(input, base, rejected, own);
      sortByKey(nodeCands);
      const files = new Set<string>();
      for (const fw of [input.host, input.cluster])
        if (fw) for (const f of ruleFiles(fw, input.cluster)) files.add(f);
      nodeSlot = {
        host: input.host,
        confs,
        deps: [...files].map((f) => [f, sig(f)]),
        cands: nodeCands,
        diags: own,
        fast: claimsFit(nodeCands),
        out: new Array(nodeCands.length),
      };
    }
    for (const d of nodeSlot.diags) expDiags.push(d);
    const segments: Segment[] = [{ owner: "NODE", cands: nodeSlot.cands, out: nodeSlot.out }];
    let fast = nodeSlot.fast;

    for (const vmid of guests.keys()) if (!input.guests[vmid]?.fw) guests.delete(vmid);
    for (const vmid of vmids) {
      const g = input.guests[vmid];
      if (!g?.fw) continue;
      let slot = guests.get(vmid);
      const fresh =
        slot !== undefined &&
        !sharedChanged &&
        slot.conf === g.conf &&
        slot.fw === g.fw &&
        // Expansion sees the run state only as running or not ("starting" runs).
        (slot.state === "stopped") === (g.state === "stopped") &&
        slot.deps.every(([file, s]) => sig(file) === s);
      if (!fresh || !slot) {
        const own: Diagnostic[] = [];
        const fw = g.fw;
        const cands = expandGuest(input, vmid, base, rejected, own);
        sortByKey(cands);
        slot = {
          conf: g.conf,
          fw,
          state: g.state,
          deps: ruleFiles(fw, input.cluster).map((f) => [f, sig(f)]),
          cands,
          diags: own,
          fast: claimsFit(cands),
          out: new Array(cands.length),
        };
        guests.set(vmid, slot);
      }
      for (const d of slot.diags) expDiags.push(d);
      if (slot.cands.length > 0) {
        segments.push({ owner: vmid, cands: slot.cands, out: slot.out });
        fast &&= slot.fast;
      }
    }
    for (const d of expDiags) diags.push(d);

    const segCands = segments.map((seg) => seg.cands);
    const unchanged =
      last !== null &&
      last.config === config &&
      last.hostPorts === input.hostPorts &&
      last.publicAddress === input.publicAddress &&
      last.segments.length === segCands.length &&
      last.segments.every((c, i) => c === segCands[i]);
    if (!unchanged || last === null) last = settle(input, segments, fast);
    for (const d of last.diags) diags.push(d);
    const { forwards, chains } = last;

    return {
      node: input.node,
      forwards,
      diagnostics: uniqueDiagnostics(diags),
      chains,
      entry: {
        externalInterface: config.externalInterface,
        hairpin: config.hairpin,
        hostAccess: config.hostAccess,
        zoneFix: zoneFix(input),
      },
    };
  }

  /** Conflicts, protected ports and the plan's forwards and chains for these candidates. */
  function settle(input: NodeInput, segments: Segment[], fast: boolean): Settling {
    const { config } = input;
    const diags: Diagnostic[] = [];
    const cands: Candidate[] = [];
    for (const seg of segments) for (const c of seg.cands) cands.push(c);
    const n = cands.length;
    const settled: Settled = { states: new Array(n), reasons: new Array(n) };
    const badIface = !IFACE.test(config.externalInterface);
    const ifaceMessage = `external_interface '${config.externalInterface}' is not a valid interface name`;
    for (let i = 0; i < n; i++) {
      const f = (cands[i] as Candidate).forward;
      if (badIface && f.state !== "error") {
        settled.states[i] = "error";
        settled.reasons[i] = ifaceMessage;
      } else {
        settled.states[i] = f.state;
        settled.reasons[i] = f.reason;
      }
    }
    if (fast) {
      settleFast(cands, settled, input, diags, tables);
    } else {
      // Ports outside 0..65535 cannot come from the grammar; stay exact anyway.
      const copies = cands.map((c, i) => ({
        ...c,
        forward: {
          ...c.forward,
          state: settled.states[i] as Forward["state"],
          reason: settled.reasons[i] ?? null,
        },
      }));
      settleStates(copies, input, diags);
      copies.forEach((c, i) => {
        settled.states[i] = c.forward.state;
        settled.reasons[i] = c.forward.reason;
      });
    }

    const forwards: Forward[] = new Array(n);
    const chains: OwnerChains[] = [];
    const owners = new Set<Owner>();
    let offset = 0;
    for (const seg of segments) {
      const act: Candidate[] = [];
      const idx: number[] = [];
      const segCands = seg.cands;
      for (let j = 0; j < segCands.length; j++) {
        const c = segCands[j] as Candidate;
        const i = offset + j;
        const state = settled.states[i] as Forward["state"];
        const reason = settled.reasons[i] ?? null;
        let f = seg.out[j];
        if (!f || f.state !== state || f.reason !== reason) {
          f = { ...c.forward, state, reason };
          seg.out[j] = f;
        }
        forwards[i] = f;
        if (state !== "active") continue;
        act.push(c);
        idx.push(i);
      }
      offset += segCands.length;
      if (act.length === 0) continue;
      owners.add(seg.owner);
      const prev = outChains.get(seg.owner);
      if (
        prev &&
        prev.cands.length === act.length &&
        prev.cands.every((c, k) => c === act[k] && prev.indices[k] === idx[k])
      ) {
        chains.push(prev.chains);
        continue;
      }
      const oc: OwnerChains = { owner: seg.owner, dnat: [], snat: [] };
      act.forEach((c, k) => {
        const forward = idx[k] as number;
        for (const r of c.dnat) oc.dnat.push({ ...r, forward } as NatRule);
        for (const r of c.snat) oc.snat.push({ ...r, forward } as NatRule);
      });
      outChains.set(seg.owner, { cands: act, indices: idx, chains: oc });
      chains.push(oc);
    }
    for (const o of outChains.keys()) if (!owners.has(o)) outChains.delete(o);

    return {
      segments: segments.map((seg) => seg.cands),
      config,
      hostPorts: input.hostPorts,
      publicAddress: input.publicAddress,
      diags,
      forwards,
      chains,
    };
  }

  return { compile };
}
