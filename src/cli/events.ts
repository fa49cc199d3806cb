// `pve-nat events`: the daemon's publish stream as JSON lines (SPEC §6), one object per line.
import { existsSync } from "node:fs";
import type { Command } from "commander";
import { subscribe } from "../bus/client.js";
import { eventToJson } from "../bus/protocol.js";
import { contextFrom, type GlobalOptions } from "../context.js";
import { UsageError } from "../errors.js";
import { busSettings, say } from "./hook.js";

/** `--count N` → N; absent → no limit (Infinity is not an integer, so it is not parsed). */
export function eventCount(text: string | undefined): number {
  if (text === undefined) return Number.POSITIVE_INFINITY;
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n) || n < 1) {
    throw new UsageError("--count needs a positive whole number");
  }
  return n;
}

export function register(program: Command): void {
  program
    .command("events")
    .description("print the daemon's events (applied, removed, error, conflict) as JSON lines")
    .option("--count <n>", "exit after N events")
    .action(async (opts: { count?: string }, cmd: Command) => {
      const count = eventCount(opts.count);
      const { eventsSocket, note } = await busSettings(
        contextFrom(cmd.optsWithGlobals<GlobalOptions>()),
      );
      if (note) say(note);
      // A subscriber connects whenever the daemon comes up; waiting is the useful behaviour.
      if (!existsSync(eventsSocket)) say(`daemon not running; waiting for it on ${eventsSocket}`);
      let seen = 0;
      for await (const event of subscribe(eventsSocket)) {
        process.stdout.write(`${JSON.stringify(eventToJson(event))}\n`);
        if (++seen >= count) break;
      }
    });
}
