// `pve-nat hook <vmid> <phase>` (SPEC §1): run by the Proxmox hookscript, which has no timeout
// and aborts a guest start when pre-start exits non-zero. So this command bounds its own wait,
// always exits 0, and says in one stderr line (Proxmox's task log) what happened.

// node:fs and process.hrtime, not node:fs/promises and performance: both of those are loaded
// on first use and would cost the hook ~3 ms of its start for one small file and one timing.
import { readFileSync, writeSync } from "node:fs";
import type { Command } from "commander";
import { BusTimeout, DaemonNotRunning, request } from "../bus/client.js";
import { HOOK_PHASES, type HookPhase, type Reply, type Request } from "../bus/protocol.js";
import { DEFAULTS, parseConfig } from "../config/conf.js";
import { type Context, contextFrom, type GlobalOptions } from "../context.js";
import type { Config } from "../model.js";
import { NODE_NAME, parseVmid } from "../names.js";

/** One line for the task log: no newlines from a daemon message can break it. Written to fd 2
 *  directly: Proxmox runs the hookscript with its stderr on a pipe, and process.stderr on a pipe
 *  is a net.Socket, whose module (node:net and the stream machinery) costs the hook ≈ 5 ms of
 *  loading for this one line. Returns whether the line is out (false: the stream holds some). */
export function say(line: string): boolean {
  const bytes = Buffer.from(`pve-nat: ${line.replace(/[\r\n]+/g, " ").trim()}\n`);
  let off = 0;
  try {
    while (off < bytes.length) off += writeSync(2, bytes, off);
    return true;
  } catch {
    // A non-blocking pipe that is full (EAGAIN): the stream waits for room instead.
    process.stderr.write(bytes.subarray(off));
    return false;
  }
}

/** The two settings a bus client needs. Never throws: a broken config falls back to the
 *  defaults and says so (the daemon, not the hook, is where config errors are reported). */
export async function busSettings(
  ctx: Context,
): Promise<{ socket: string; eventsSocket: string; timeoutMs: number; note: string | null }> {
  let config: Config = DEFAULTS;
  let note: string | null = null;
  try {
    const parsed = parseConfig(readFileSync(ctx.configPath, "utf8"), ctx.configPath);
    config = parsed.config;
    if (parsed.errors.length > 0) note = `${ctx.configPath} has errors; using defaults for them`;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException | null)?.code;
    // A missing file means defaults (SPEC §5), not a problem worth a word.
    if (code !== "ENOENT")
      note = `cannot read ${ctx.configPath} (${code ?? String(err)}); using defaults`;
  }
  return {
    socket: ctx.path(config.socket),
    eventsSocket: ctx.path(config.eventsSocket),
    timeoutMs: config.hookTimeoutMs,
    note,
  };
}

export type Outcome =
  | { kind: "reply"; reply: Reply; ms: number }
  | { kind: "down" }
  | { kind: "timeout"; timeoutMs: number }
  | { kind: "failed"; error: string };

/** One bounded request; every failure becomes an Outcome, nothing is thrown. */
export async function boundedRequest(
  socket: string,
  req: Request,
  timeoutMs: number,
): Promise<Outcome> {
  const started = process.hrtime.bigint();
  try {
    const reply = await request(socket, req, timeoutMs);
    const ms = Math.round(Number(process.hrtime.bigint() - started) / 1e6);
    return { kind: "reply", reply, ms };
  } catch (err) {
    if (err instanceof DaemonNotRunning) return { kind: "down" };
    if (err instanceof BusTimeout) return { kind: "timeout", timeoutMs: err.timeoutMs };
    return { kind: "failed", error: err instanceof Error ? err.message : String(err) };
  }
}

function withNote(line: string, note: string | null): string {
  return note ? `${line} (${note})` : line;
}

/** The hook's whole job, as a function returning the line it prints (tests call it). */
export async function runHook(
  ctx: Context,
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<string> {
  const [vmidText = "", phaseText = "", ...extra] = args;
  const vmid = parseVmid(vmidText);
  const phase = HOOK_PHASES.includes(phaseText as HookPhase) ? (phaseText as HookPhase) : null;
  if (vmid === null || phase === null || extra.length > 0) {
    const got = args.map((a) => JSON.stringify(a)).join(" ") || "nothing";
    return `hook: expected <vmid> <${HOOK_PHASES.join("|")}>, got ${got}; nothing done`;
  }
  const who = `vm${vmid} ${phase}`;
  if (phase === "pre-stop") return `${who}: nothing to do`;

  const { socket, timeoutMs, note } = await busSettings(ctx);
  const req: Request = { v: 1, type: "hook", vmid, phase };
  const from = env.PVE_MIGRATED_FROM;
  if (from && NODE_NAME.test(from)) req.migratedFrom = from;

  const outcome = await boundedRequest(socket, req, timeoutMs);
  switch (outcome.kind) {
    case "reply":
      return withNote(
        outcome.reply.ok
          ? `${who}: ${outcome.reply.message} (${outcome.ms} ms)`
          : `${who}: daemon reported an error: ${outcome.reply.error} (${outcome.ms} ms)`,
        note,
      );
    case "down":
      return withNote(
        phase === "post-stop"
          ? `daemon not running; forwards for vm${vmid} will be removed when it starts`
          : `daemon not running; forwards for vm${vmid} will be applied when it starts`,
        note,
      );
    case "timeout":
      return withNote(
        `${who}: no answer from the daemon within ${outcome.timeoutMs} ms; it will catch up on its own`,
        note,
      );
    case "failed":
      return withNote(`${who}: ${outcome.error}; the daemon will catch up on its own`, note);
  }
}

/** `pve-nat hook …` as run: main.ts's fast path calls it without commander, `register` with. */
export async function hookCommand(args: string[], opts: GlobalOptions): Promise<void> {
  let line: string;
  try {
    line = await runHook(contextFrom(opts), args, process.env);
  } catch (err) {
    line = `hook: unexpected error: ${err instanceof Error ? err.message : String(err)}; nothing done`;
  }
  const out = say(line);
  process.exitCode = 0;
  // Proxmox waits for the hook's exit, not for its line. Left to end on its own, the process
  // first closes zeromq's context (a thread to reap it, waited for) and frees V8's heap: ≈ 3 ms
  // of every guest start here, after everything the hook does is done (the reply is in, the
  // sockets are closed, the line is written).
  if (out) process.exit(0);
}

export function register(program: Command): void {
  program
    .command("hook")
    .description("hookscript entry: report a guest start/stop to the daemon (always exits 0)")
    .argument("[vmid]", "guest id")
    .argument("[phase]", HOOK_PHASES.join("|"))
    .allowExcessArguments(true)
    .allowUnknownOption(true)
    .action((_vmid: unknown, _phase: unknown, _opts: unknown, cmd: Command) =>
      hookCommand(cmd.args, cmd.optsWithGlobals<GlobalOptions>()),
    );
}
