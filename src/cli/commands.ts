import type { Command } from "commander";

/** Each subcommand module exports `register(program)`; this list is the whole CLI. */
export const commands: Array<(program: Command) => void> = [];
