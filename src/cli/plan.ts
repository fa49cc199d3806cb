// `pve-nat plan [vmid]` (SPEC §6, §8): the forwards and the restore payload that, applied to the
// node's current nat/raw state, gives exactly what the daemon would make of it: the same sync
// decision (iptables/sync.ts) and renderer the daemon uses, against the live tables when they
// can be read (else against an empty table, and it says so). Changes nothing.

import type { Command } from "commander";
import { contextFrom, type GlobalOptions } from "../context.js";
import { UsageError } from "../errors.js";
import { renderRestore } from "../iptables/render.js";
import { decideSync } from "../iptables/sync.js";
import type { NatPlan } from "../model.js";
import { parseVmid as vmidOf } from "../names.js";
import { compile } from "../nat/compile.js";
import { planToJson } from "../nat/json.js";
import { loadNode, readConfig } from "../pve/node.js";
import { diagnosticLine, forwardsTable, sortDiagnostics } from "./format.js";
import { readLive } from "./live.js";

/** A VMID argument (names.ts's rule), or a usage error. */
export function parseVmid(text: string): number {
  const vmid = vmidOf(text);
  if (vmid === null) throw new UsageError(`not a VMID: "${text}"`);
  return vmid;
}

/** The plan's forwards narrowed to one guest, or all of them. */
export function narrow(plan: NatPlan, vmid: number | null): NatPlan {
  return vmid === null ? plan : { ...plan, forwards: plan.forwards.filter((f) => f.vmid === vmid) };
}

export function register(program: Command): void {
  program
    .command("plan [vmid]")
    .description("show the forwards and the iptables-restore payload pve-nat would apply")
    .action(async (vmidArg: string | undefined, _opts: unknown, cmd: Command) => {
      const ctx = contextFrom(cmd.optsWithGlobals<GlobalOptions>());
      const vmid = vmidArg === undefined ? null : parseVmid(vmidArg);
      const input = await loadNode({ path: ctx.path, configPath: ctx.configPath, node: ctx.node });
      const full = compile(input);
      const { live, unread } = await readLive(ctx, (await readConfig(ctx.configPath)).config);
      const ask = vmid === null ? { owners: [], all: true } : { owners: [vmid], all: false };
      const restore = renderRestore(decideSync(full, live, ask).request);
      const diagnostics = [...full.diagnostics];
      if (unread !== null) {
        diagnostics.push({
          file: "iptables",
          line: 0,
          severity: "info",
          message: `cannot read the live nat/raw tables (${unread}): payload rendered against an empty table`,
        });
      }
      const shown = narrow({ ...full, diagnostics: sortDiagnostics(diagnostics) }, vmid);
      if (ctx.json) {
        process.stdout.write(`${JSON.stringify(planToJson(shown, { restore }), null, 2)}\n`);
        return;
      }
      const out = [forwardsTable(shown.forwards)];
      if (shown.diagnostics.length > 0) {
        out.push("\n", ...shown.diagnostics.map((d) => `${diagnosticLine(d)}\n`));
      }
      out.push("\n", restore);
      process.stdout.write(out.join(""));
    });
}
