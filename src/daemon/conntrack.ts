import type { Logger } from "pino";
import { run as exec } from "../exec.js";
import type { Forward, NatPlan, Owner } from "../model.js";
import { ownerOf } from "../nat/lookup.js";

// Removing or changing a forward must also drop the conntrack entries it created, or
// established flows (UDP above all) keep reaching the old target (SPEC §4). A shell like
// iptables/runner.ts: the only other place that runs a command.

/** Arguments after `conntrack -D`, each token already validated. */
export type ConntrackDelete = string[];

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const PORTS = /^\d{1,5}([,:]\d{1,5})*$/;
/** More ports than this in one forward: match the guest side instead of port by port. */
const MAX_PORTS = 16;
/** Commands per apply, so a large removal cannot stall the queue. */
export const MAX_DELETES = 64;

function ports(spec: string): number[] | null {
  if (!PORTS.test(spec)) return null;
  const out: number[] = [];
  for (const part of spec.split(",")) {
    const [a, b] = part.split(":").map(Number) as [number, number | undefined];
    const to = b ?? a;
    if (to < a || to - a >= MAX_PORTS) return null;
    for (let p = a; p <= to; p++) out.push(p);
    if (out.length > MAX_PORTS) return null;
  }
  return out;
}

function key(f: Forward): string {
  return JSON.stringify([f.direction, f.proto, f.public, f.private, f.source, f.destination]);
}

/** Deletions for one forward that stopped being active. */
export function deletesFor(f: Forward): ConntrackDelete[] {
  const proto = f.proto === "tcp" || f.proto === "udp" ? ["-p", f.proto] : [];
  const guest = f.private.address;
  if (f.direction === "in") {
    const pub = f.public.address;
    const list = f.public.ports ? ports(f.public.ports) : null;
    if (pub && IPV4.test(pub) && list && proto.length > 0) {
      return list.map((p) => [...proto, "--orig-dst", pub, "--orig-port-dst", String(p)]);
    }
    // Replies come from the guest for every connection DNATed to it.
    return guest && IPV4.test(guest) ? [[...proto, "--reply-src", guest]] : [];
  }
  if (!guest || !IPV4.test(guest)) return [];
  const del = [...proto, "--orig-src", guest];
  if (f.destination && IPV4.test(f.destination)) del.push("--orig-dst", f.destination);
  const list = f.private.ports ? ports(f.private.ports) : null;
  if (proto.length > 0 && list && list.length === 1) del.push("--orig-port-dst", String(list[0]));
  return [del];
}

/** Forwards of `owners` active in `before` and not (identically) active in `after`. */
export function forwardsGone(
  before: NatPlan,
  after: NatPlan,
  owners: ReadonlySet<Owner>,
): ConntrackDelete[] {
  const still = new Set(after.forwards.filter((f) => f.state === "active").map(key));
  const seen = new Set<string>();
  const out: ConntrackDelete[] = [];
  for (const f of before.forwards) {
    if (f.state !== "active" || !owners.has(ownerOf(f)) || still.has(key(f))) continue;
    for (const d of deletesFor(f)) {
      const k = d.join(" ");
      if (!seen.has(k)) {
        seen.add(k);
        out.push(d);
      }
    }
  }
  return out;
}

/** Runs the deletions (bounded in count and time); failures are logged, never thrown. */
export function conntrackCleaner(
  log: Logger,
  run: (args: string[]) => Promise<{ code: number | null; stderr: string }> = (args) =>
    exec("conntrack", args, { timeoutMs: 2000 }),
): (deletes: ConntrackDelete[]) => Promise<void> {
  return async (deletes) => {
    const todo = deletes.slice(0, MAX_DELETES);
    if (deletes.length > todo.length) {
      log.warn({ skipped: deletes.length - todo.length }, "conntrack: too many deletions");
    }
    for (const d of todo) {
      try {
        const r = await run(["-D", ...d]);
        // Exit 1 with "0 flow entries have been deleted" just means nothing matched.
        if (r.code !== 0 && !/0 flow entries/.test(r.stderr)) {
          log.warn({ args: d, exitCode: r.code, stderr: r.stderr.trim() }, "conntrack -D failed");
        } else {
          log.debug({ args: d }, "conntrack -D");
        }
      } catch (err) {
        log.warn(
          { args: d, err: err instanceof Error ? err.message : String(err) },
          "conntrack -D failed",
        );
      }
    }
  };
}
