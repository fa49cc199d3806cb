// The I/O half of check's live diagnosis (issue 11): reads the facts diagnose/forwards.ts
// judges — the filter table, the host's addresses, the daemon's answer, storage.cfg and the
// hookscript files. Runs only where the live state is the node's (cli/live.ts); elsewhere it
// says so once, as `plan` does.
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { DaemonNotRunning, request } from "../bus/client.js";
import type { Context } from "../context.js";
import { parseFilterSave } from "../diagnose/filter.js";
import { diagnoseForwards, type NodeFacts, snippetFiles } from "../diagnose/forwards.js";
import { createRunner, saveFilter } from "../iptables/runner.js";
import type { Diagnostic, NatPlan, NodeInput } from "../model.js";
import { parseStorageCfg, STORAGE_CFG } from "../pve/hookscript.js";
import { interfaceAddresses } from "../pve/host.js";
import { liveReadable } from "./live.js";

async function daemonAnswer(socket: string): Promise<NodeFacts["daemon"]> {
  try {
    const r = await request(socket, { v: 1, type: "ping" }, 1000);
    return r.ok ? null : { error: r.error };
  } catch (err) {
    if (err instanceof DaemonNotRunning) return { notRunning: true };
    return { error: err instanceof Error ? err.message : String(err) };
  }
}

/** Every reason the plan's forwards (`only`: that guest's) cannot carry traffic on this node. */
export async function liveDiagnostics(
  ctx: Context,
  plan: NatPlan,
  input: NodeInput,
  only: number | null = null,
): Promise<Diagnostic[]> {
  const why = liveReadable(ctx);
  if (why !== null) {
    return [
      {
        file: "iptables",
        line: 0,
        severity: "info",
        message: `cannot read the node's live state (${why}): forwards not checked against the filter table, the node's addresses, the daemon and the hookscripts`,
      },
    ];
  }
  const extra: Diagnostic[] = [];
  let filter: NodeFacts["filter"] = null;
  try {
    const { backend } = await createRunner(input.config.iptables);
    filter = parseFilterSave(await saveFilter(backend));
  } catch (err) {
    extra.push({
      file: "iptables:filter",
      line: 0,
      severity: "warning",
      message: `cannot read the filter table to check FORWARD: ${err instanceof Error ? err.message : String(err)}`,
    });
  }
  const storages = parseStorageCfg(await readFile(ctx.path(STORAGE_CFG), "utf8").catch(() => null));
  const existingFiles = new Set(
    snippetFiles(input, storages).filter((f) => existsSync(ctx.path(f))),
  );
  const facts: NodeFacts = {
    filter,
    addresses: await interfaceAddresses(),
    daemon: await daemonAnswer(ctx.path(input.config.socket)),
    storages,
    existingFiles,
  };
  return [...extra, ...diagnoseForwards(plan, input, facts, only)];
}
