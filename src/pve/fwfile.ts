// A Proxmox firewall file (cluster.fw, host.fw, <vmid>.fw) judged line by line the way
// pve-firewall does (Firewall.pm: generic_fw_config_parser, parse_fw_rule, verify_rule, the
// parse_*fw_option functions, parse_alias, the ipset entry checks). The grammar is split by level
// under ./fw/: bytes (file text as Perl sees it), rule and macro (one rule line), options, entries
// (aliases and ipsets), sections (headers), file (the whole file). This is its public face.

export { fromByteString, show, toByteString } from "./fw/bytes.js";
export { parseFwFile } from "./fw/file.js";
export { macroConflicts, macroDependsOnFamily } from "./fw/macro.js";
export { type RuleEnv, splitRule, verifyRule } from "./fw/rule.js";
