// pve-nat's version, set by the bundler (scripts/bundle.mjs); free of imports so the hook's
// fast path and the daemon's presence file (cluster/presence.ts) share it.
export const VERSION = process.env.PVE_NAT_VERSION ?? "0.0.0-dev";
