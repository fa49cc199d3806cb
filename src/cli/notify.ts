// `pve-nat notify reload|guest <vmid> up|down`: tell the daemon to look now instead of at its
// next poll. Run from pve-firewall's unit (SPEC §1), so like the hook it is bounded and always
// exits 0: it can never fail the firewall service.
import type { Command } from "commander";
import type { Request } from "../bus/protocol.js";
import { contextFrom, type GlobalOptions } from "../context.js";
import { parseVmid } from "../names.js";
import { boundedRequest, busSettings, say } from "./hook.js";

const USAGE = "expected `notify reload` or `notify guest <vmid> up|down`";

export function notifyRequest(args: string[]): Request | { error: string } {
  const [what, vmidText = "", state, ...extra] = args;
  if (what === "reload" && args.length === 1) return { v: 1, type: "notify", what: "reload" };
  if (what === "guest" && extra.length === 0) {
    const vmid = parseVmid(vmidText);
    if (vmid !== null && (state === "up" || state === "down")) {
      return { v: 1, type: "guest", vmid, up: state === "up" };
    }
  }
  const got = args.map((a) => JSON.stringify(a)).join(" ") || "nothing";
  return { error: `notify: ${USAGE}, got ${got}; nothing done` };
}

export async function runNotify(args: string[], opts: GlobalOptions): Promise<string> {
  const req = notifyRequest(args);
  if ("error" in req) return req.error;
  const what =
    req.type === "guest" ? `notify vm${req.vmid} ${req.up ? "up" : "down"}` : "notify reload";
  const { socket, timeoutMs, note } = await busSettings(contextFrom(opts));
  const outcome = await boundedRequest(socket, req, timeoutMs);
  const tail = note ? ` (${note})` : "";
  switch (outcome.kind) {
    case "reply":
      return outcome.reply.ok
        ? `${what}: ${outcome.reply.message} (${outcome.ms} ms)${tail}`
        : `${what}: daemon reported an error: ${outcome.reply.error} (${outcome.ms} ms)${tail}`;
    case "down":
      return `${what}: daemon not running; it reads everything when it starts${tail}`;
    case "timeout":
      return `${what}: no answer from the daemon within ${outcome.timeoutMs} ms; it will catch up on its own${tail}`;
    case "failed":
      return `${what}: ${outcome.error}; the daemon will catch up on its own${tail}`;
  }
}

/** `pve-nat notify …` as run: main.ts's fast path calls it without commander, `register` with. */
export async function notifyCommand(args: string[], opts: GlobalOptions): Promise<void> {
  let line: string;
  try {
    line = await runNotify(args, opts);
  } catch (err) {
    line = `notify: unexpected error: ${err instanceof Error ? err.message : String(err)}`;
  }
  say(line);
  process.exitCode = 0;
}

export function register(program: Command): void {
  program
    .command("notify")
    .description(
      "tell the daemon to re-read now: `reload`, or `guest <vmid> up|down` (always exits 0)",
    )
    .argument("[args...]", "reload | guest <vmid> up|down")
    .allowUnknownOption(true)
    .action((_args: unknown, _opts: unknown, cmd: Command) =>
      notifyCommand(cmd.args, cmd.optsWithGlobals<GlobalOptions>()),
    );
}
