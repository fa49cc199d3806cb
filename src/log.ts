// Structured logs (pino, JSON lines) to stdout, which systemd's journal collects.
import pino from "pino";
import type { Config } from "./model.js";

export type Logger = pino.Logger;

export function createLogger(
  level: Config["logLevel"],
  bindings?: object,
  destination?: pino.DestinationStream,
): pino.Logger {
  const logger = pino(
    { level, base: { name: "pve-nat" }, timestamp: pino.stdTimeFunctions.isoTime },
    destination ?? pino.destination({ fd: 1, sync: true }),
  );
  return bindings ? logger.child(bindings) : logger;
}
