import type { Command } from "commander";
import { register as selfTest } from "../native/selftest.js";
import { register as apply } from "./apply.js";
import { register as attach } from "./attach.js";
import { register as check } from "./check.js";
import { register as daemon } from "./daemon.js";
import { register as events } from "./events.js";
import { register as hook } from "./hook.js";
import { register as metrics } from "./metrics.js";
import { register as notify } from "./notify.js";
import { register as plan } from "./plan.js";
import { register as status } from "./status.js";

/** Each subcommand module exports `register(program)`; this list is the whole CLI. */
export const commands: Array<(program: Command) => void> = [
  check,
  plan,
  hook,
  notify,
  events,
  attach,
  daemon,
  status,
  apply,
  metrics,
  selfTest,
];
