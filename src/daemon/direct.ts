import pino from "pino";
import { createRunner } from "../iptables/runner.js";
import type { Config } from "../model.js";
import { STATE_DIR } from "../paths.js";
import { createNodeSource } from "../pve/cache.js";
import type { NodePaths } from "../pve/node.js";
import { type ApplyResult, createApplier } from "./applier.js";
import { realClock } from "./clock.js";
import { ackMessage } from "./lifecycle.js";
import { acquireLock } from "./lock.js";
import { planLoader } from "./plan.js";
import { fwbrDevices, realProcFs, setArpIgnore } from "./prereq.js";

// `apply` and `flush` when no daemon answers (SPEC §4): the same applier, run once in this
// process under a lock file, so two commands never interleave their restores.

export const LOCK_FILE = `${STATE_DIR}/lock`;

interface DirectOptions {
  paths: NodePaths;
  config: Config;
}

async function withApplier<T>(
  o: DirectOptions,
  fn: (applier: ReturnType<typeof createApplier>) => Promise<T>,
): Promise<T> {
  const release = await acquireLock(o.paths.path(LOCK_FILE));
  const applier = createApplier({
    load: planLoader(createNodeSource(o.paths)),
    runner: await createRunner(o.config.iptables),
    publish: () => {},
    // Errors reach the caller as rejections; the CLI prints them.
    log: pino({ level: "silent" }),
    clock: realClock,
    startFull: false,
  });
  try {
    return await fn(applier);
  } finally {
    await applier.stop();
    await release();
  }
}

function summary(r: ApplyResult): string {
  const active = r.plan.forwards.filter((f) => f.state === "active").length;
  return `${active} active forward(s); ${r.restored ? `${r.rendered.length} owner(s) rewritten in ${r.ms} ms` : "already live"}`;
}

export async function directApply(o: DirectOptions, vmid: number | null): Promise<string> {
  return withApplier(o, async (applier) => {
    if (vmid === null) {
      const r = await applier.apply({ full: true });
      if (r.plan.entry.zoneFix) {
        await setArpIgnore(await fwbrDevices(realProcFs), 1, realProcFs, pino({ level: "silent" }));
      }
      return summary(r);
    }
    return `vm${vmid}: ${ackMessage(vmid, await applier.apply({ owners: [vmid] }), false)}`;
  });
}

export async function directFlush(o: DirectOptions): Promise<string> {
  return withApplier(o, async (applier) => {
    await applier.flush();
    await setArpIgnore(await fwbrDevices(realProcFs), 0, realProcFs, pino({ level: "silent" }));
    return "every PVENAT- chain and jump removed";
  });
}
