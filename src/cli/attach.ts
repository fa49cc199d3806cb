// `pve-nat attach|detach <vmid…>|--all` (SPEC §6): point a guest's hookscript at pve-nat's
// snippet with `qm set` / `pct set`, the only supported way to change a guest config. A guest
// with another hookscript is refused unless --chain (keep it, run it after ours) or --force.
import { mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import type { Command } from "commander";
import { readClusterView } from "../cluster/files.js";
import { attachRefusal } from "../cluster/presence.js";
import { type Context, contextFrom, type GlobalOptions } from "../context.js";
import { EXIT_FINDINGS, UsageError } from "../errors.js";
import { run } from "../exec.js";
import type { GuestKind } from "../model.js";
import { parseVmid } from "../names.js";
import { compile } from "../nat/compile.js";
import { PVE_DIR } from "../paths.js";
import { parseGuestConf } from "../pve/guestconf.js";
import {
  type ChainEntry,
  chainFile,
  formatChain,
  HOOK_VOLID,
  isPveNatHook,
  isSnippetsRefusal,
  parseChain,
  parseStorageCfg,
  STORAGE_CFG,
  type Storage,
  snippetPath,
  snippetsHelp,
} from "../pve/hookscript.js";
import { loadNode, nodeName, readConfig } from "../pve/node.js";
import { confVmid } from "../pve/nodefiles.js";

interface Guest {
  vmid: number;
  kind: GuestKind;
  /** qm or pct */
  tool: string;
  hookscript: string | null;
}

export interface Result {
  vmid: number;
  ok: boolean;
  message: string;
}

/** Runs qm/pct; never throws. */
async function runTool(tool: string, args: string[]): Promise<{ ok: boolean; output: string }> {
  const r = await run(tool, args, { timeoutMs: 120_000 });
  const output =
    `${r.stdout}${r.stderr}`.trim() || (r.failure ?? (r.code === 0 ? "" : `exit code ${r.code}`));
  return { ok: r.code === 0, output };
}

async function readText(file: string): Promise<string | null> {
  try {
    return await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw err;
  }
}

/** pmxcfs supports rename, so this is atomic there too (PVE writes its files the same way). */
async function writeAtomic(file: string, text: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp.${process.pid}`;
  await writeFile(tmp, text, { mode: 0o644 });
  await rename(tmp, file);
}

async function findGuest(ctx: Context, node: string, vmid: number): Promise<Guest | null> {
  for (const [kind, dir, tool] of [
    ["qemu", "qemu-server", "qm"],
    ["lxc", "lxc", "pct"],
  ] as const) {
    const rel = `nodes/${node}/${dir}/${vmid}.conf`;
    const text = await readText(ctx.path(`${PVE_DIR}/${rel}`));
    if (text !== null) {
      return { vmid, kind, tool, hookscript: parseGuestConf(text, vmid, kind, rel).hookscript };
    }
  }
  return null;
}

/** Local guests (this node's config dirs), sorted. */
async function localGuests(ctx: Context, node: string): Promise<number[]> {
  const vmids = new Set<number>();
  for (const dir of ["qemu-server", "lxc"]) {
    const names = await readdir(ctx.path(`${PVE_DIR}/nodes/${node}/${dir}`)).catch(() => []);
    for (const name of names) {
      const vmid = confVmid(name);
      if (vmid !== null) vmids.add(vmid);
    }
  }
  return [...vmids].sort((a, b) => a - b);
}

/** `--all` for attach: the guests the compiler gives at least one forward, whatever its state
 *  (running or not, active or in error): the same reading of the files the daemon does, so
 *  NAT rules inherited through a security group count too. */
async function guestsWithNat(ctx: Context): Promise<number[]> {
  const plan = compile(await loadNode(ctx));
  const vmids = new Set(plan.forwards.flatMap((f) => (f.vmid === null ? [] : [f.vmid])));
  return [...vmids].sort((a, b) => a - b);
}

async function resolveNode(ctx: Context): Promise<string> {
  const { config } = await readConfig(ctx.configPath);
  return nodeName(ctx, config);
}

function refusalHint(output: string, storages: Map<string, Storage>): string {
  return isSnippetsRefusal(output) ? `; ${snippetsHelp(storages)}` : "";
}

interface AttachOptions {
  chain: boolean;
  force: boolean;
}

async function attachOne(
  ctx: Context,
  node: string,
  vmid: number,
  opts: AttachOptions,
  storages: Map<string, Storage>,
  /** Why the cluster does not allow attaching (a member without pve-nat), unless --force. */
  refusal: string | null,
): Promise<Result> {
  const guest = await findGuest(ctx, node, vmid);
  if (!guest) return { vmid, ok: false, message: `no guest ${vmid} on node ${node}` };
  const current = guest.hookscript;
  if (current !== null && isPveNatHook(current))
    return { vmid, ok: true, message: "already attached" };
  if (refusal !== null) return { vmid, ok: false, message: refusal };

  const chainPath = ctx.path(chainFile(vmid));
  let chained: ChainEntry | null = null;
  if (current !== null) {
    if (!opts.chain && !opts.force) {
      return {
        vmid,
        ok: false,
        message:
          `already has hookscript ${current}; use --chain to keep it (pve-nat-hook runs it after ` +
          "pve-nat, with the same arguments and exit status) or --force to replace it",
      };
    }
    if (opts.chain) {
      const file = snippetPath(current, storages);
      if (typeof file !== "string")
        return { vmid, ok: false, message: `cannot chain ${current}: ${file.error}` };
      chained = { volid: current, path: file };
      // Written before the guest points at us, so no start can run pve-nat-hook without it.
      await writeAtomic(chainPath, formatChain(chained));
    }
  }
  const args = ["set", String(vmid), "--hookscript", HOOK_VOLID];
  const run = await runTool(guest.tool, args);
  if (!run.ok) {
    if (chained) await rm(chainPath, { force: true });
    return {
      vmid,
      ok: false,
      message: `${guest.tool} ${args.join(" ")} failed: ${run.output}${refusalHint(run.output, storages)}`,
    };
  }
  // --force, or a chain file left over from an earlier attach: it must not run someone's
  // old script after this guest's new one.
  if (!chained) await rm(chainPath, { force: true });
  return {
    vmid,
    ok: true,
    message: chained
      ? `attached, chained to ${chained.volid} (runs after pve-nat)`
      : current !== null
        ? `attached, replacing ${current}`
        : "attached",
  };
}

async function detachOne(ctx: Context, node: string, vmid: number): Promise<Result> {
  const guest = await findGuest(ctx, node, vmid);
  if (!guest) return { vmid, ok: false, message: `no guest ${vmid} on node ${node}` };
  const current = guest.hookscript;
  if (current === null) return { vmid, ok: true, message: "not attached" };
  if (!isPveNatHook(current)) {
    return { vmid, ok: true, message: `hookscript is ${current}, not pve-nat's; left as is` };
  }
  const chainPath = ctx.path(chainFile(vmid));
  const text = await readText(chainPath);
  const chained = text === null ? null : parseChain(text);
  const args = chained
    ? ["set", String(vmid), "--hookscript", chained.volid]
    : ["set", String(vmid), "--delete", "hookscript"];
  const run = await runTool(guest.tool, args);
  if (!run.ok)
    return { vmid, ok: false, message: `${guest.tool} ${args.join(" ")} failed: ${run.output}` };
  if (text !== null) await rm(chainPath, { force: true });
  return { vmid, ok: true, message: chained ? `detached, ${chained.volid} restored` : "detached" };
}

function targets(vmids: string[], all: boolean | undefined): number[] | null {
  if (all && vmids.length > 0) throw new UsageError("give VMIDs or --all, not both");
  if (all) return null;
  if (vmids.length === 0) throw new UsageError("give one or more VMIDs, or --all");
  return vmids.map((text) => {
    const vmid = parseVmid(text);
    if (vmid === null) throw new UsageError(`not a VMID: ${JSON.stringify(text)}`);
    return vmid;
  });
}

function report(ctx: Context, command: string, results: Result[]): void {
  if (ctx.json) {
    process.stdout.write(`${JSON.stringify({ version: 1, command, results })}\n`);
  } else {
    for (const r of results) {
      (r.ok ? process.stdout : process.stderr).write(`vm${r.vmid}: ${r.message}\n`);
    }
    if (results.length === 0) process.stdout.write(`${command}: no guest to ${command}\n`);
  }
  if (results.some((r) => !r.ok)) process.exitCode = EXIT_FINDINGS;
}

export async function runAttach(
  ctx: Context,
  vmidArgs: string[],
  opts: AttachOptions & { all?: boolean },
): Promise<Result[]> {
  if (opts.chain && opts.force) throw new UsageError("--chain and --force exclude each other");
  const chosen = targets(vmidArgs, opts.all);
  const node = await resolveNode(ctx);
  const vmids = chosen ?? (await guestsWithNat(ctx));
  const storages = parseStorageCfg(await readText(ctx.path(STORAGE_CFG)));
  // The snippet is on `local`, per node: every member needs pve-nat before any guest points at
  // it, or a migration or HA recovery to a node without it cannot start the guest.
  const refusal = opts.force ? null : attachRefusal(await readClusterView(ctx, node));
  const results: Result[] = [];
  for (const vmid of vmids) {
    results.push(await attachOne(ctx, node, vmid, opts, storages, refusal));
  }
  return results;
}

export async function runDetach(
  ctx: Context,
  vmidArgs: string[],
  opts: { all?: boolean },
): Promise<Result[]> {
  const chosen = targets(vmidArgs, opts.all);
  const node = await resolveNode(ctx);
  let vmids = chosen;
  if (vmids === null) {
    vmids = [];
    for (const vmid of await localGuests(ctx, node)) {
      const hook = (await findGuest(ctx, node, vmid))?.hookscript;
      if (hook && isPveNatHook(hook)) vmids.push(vmid);
    }
  }
  const results: Result[] = [];
  for (const vmid of vmids) results.push(await detachOne(ctx, node, vmid));
  return results;
}

export function register(program: Command): void {
  program
    .command("attach")
    .description("set pve-nat's hookscript on guests (qm/pct set --hookscript)")
    .argument("[vmid...]", "guests to attach")
    .option("--all", "every local guest that has NAT rules")
    .option("--chain", "keep a guest's existing hookscript and run it after pve-nat's")
    .option(
      "--force",
      "replace a guest's existing hookscript; attach even while a cluster node lacks pve-nat",
    )
    .action(
      async (
        vmids: string[],
        opts: { all?: boolean; chain?: boolean; force?: boolean },
        cmd: Command,
      ) => {
        const ctx = contextFrom(cmd.optsWithGlobals<GlobalOptions>());
        const results = await runAttach(ctx, vmids, {
          all: opts.all,
          chain: opts.chain === true,
          force: opts.force === true,
        });
        report(ctx, "attach", results);
      },
    );
  program
    .command("detach")
    .description("remove pve-nat's hookscript from guests, restoring a chained one")
    .argument("[vmid...]", "guests to detach")
    .option("--all", "every local guest whose hookscript is pve-nat's")
    .action(async (vmids: string[], opts: { all?: boolean }, cmd: Command) => {
      const ctx = contextFrom(cmd.optsWithGlobals<GlobalOptions>());
      report(ctx, "detach", await runDetach(ctx, vmids, opts));
    });
}
