import { isIPv4, netIp } from "../pve/address.js";
import { type PortRange, parsePorts } from "../pve/ports.js";

// The NAT trigger (SPEC §2.2): a comment that begins with the word NAT. "NAT", "NAT ssh",
// "NAT: ssh" are the compatible form; "NAT:" immediately followed by the public side is the
// explicit form. Anything else right after "NAT:" is an error, and so is "NAT: 8081" (a space,
// then what looks like a public side): read either way it would be a silent guess.
// The word is case-sensitive, as the old patch had it.

export type NatComment =
  | { form: "compatible"; text: string }
  | { form: "explicit"; address: string | null; ports: PortRange[] | null; text: string }
  | { form: "invalid"; message: string };

const WORD = /^NAT(?=$|[\s:])/;
const EXPLICIT = /^NAT:(\S+)(?:\s+(.*))?$/s;
const SPACED = /^NAT:\s+(\S+)(?:\s+(.*))?$/s;
const WITH_ADDRESS = /^([0-9]+\.[0-9]+\.[0-9]+\.[0-9]+)(?::(.+))?$/;
/** "pubalias:8082": a name where the public address goes. */
const NAMED = /^[A-Za-z][A-Za-z0-9_.-]*:[0-9]/;

export const EXPLICIT_FORMS =
  "expected NAT:<port>, NAT:<from>:<to>, NAT:<IPv4>:<port> or (OUT rules) NAT:<IPv4>, " +
  "optionally followed by a space and text";

export function isNatComment(comment: string | null): boolean {
  return comment !== null && WORD.test(comment);
}

function publicPorts(text: string): PortRange[] | null {
  if (!/^[0-9][0-9:,]*$/.test(text)) return null;
  const ports = parsePorts(text);
  if ("error" in ports || ports.length === 0 || ports.some((p) => p.from === 0)) return null;
  return ports;
}

type PublicSide = { address: string | null; ports: PortRange[] | null } | "ipv6" | null;

/** The public side of the explicit form ("822", "203.0.113.5:822", …); null when invalid. */
function publicSide(token: string): PublicSide {
  const a = WITH_ADDRESS.exec(token);
  if (a) {
    if (!isIPv4(a[1] as string)) return null;
    if (a[2] === undefined) return { address: a[1] as string, ports: null };
    const ports = publicPorts(a[2]);
    return ports ? { address: a[1] as string, ports } : null;
  }
  const ports = publicPorts(token);
  if (ports) return { address: null, ports };
  if (/^\[[0-9A-Fa-f:.]*\](?::|$)/.test(token) || token.includes("::")) return "ipv6";
  if (netIp(token)?.family === 6) return "ipv6";
  return null;
}

const clip = (s: string) => (s.length > 40 ? `${s.slice(0, 40)}…` : s);

function invalid(message: string): NatComment {
  return { form: "invalid", message };
}

function ipv6(written: string): NatComment {
  return invalid(
    `IPv6 is not supported in NAT rules: the public side "${clip(written)}" is an IPv6 address (IPv6 traffic is not NATed)`,
  );
}

/** null: not a NAT comment. */
export function parseNatComment(comment: string | null): NatComment | null {
  if (comment === null || !WORD.test(comment)) return null;
  const m = EXPLICIT.exec(comment);
  if (m) {
    const token = m[1] as string;
    const text = (m[2] ?? "").trim();
    const side = publicSide(token);
    if (side === "ipv6") return ipv6(`NAT:${token}`);
    if (side !== null) return { form: "explicit", ...side, text };
    let hint = "";
    if (NAMED.test(token))
      hint = "; an alias cannot name the public address: write the IPv4 address";
    else if (/^[A-Za-z]/.test(token))
      hint = `; for the compatible form write "${clip(`NAT ${comment.slice(4)}`)}"`;
    return invalid(`invalid public side "NAT:${clip(token)}": ${EXPLICIT_FORMS}${hint}`);
  }
  if (comment === "NAT:") {
    return invalid(
      `"NAT:" names no public side: ${EXPLICIT_FORMS}; for the compatible form write "NAT"`,
    );
  }
  const s = SPACED.exec(comment);
  if (s) {
    // "NAT: text" is the compatible form, unless the text starts with a public side.
    const token = s[1] as string;
    const rest = s[2] ? ` ${s[2].trim()}` : "";
    const side = publicSide(token);
    if (side === "ipv6") return ipv6(`NAT: ${token}`);
    if (side !== null) {
      return invalid(
        `ambiguous "${clip(`NAT: ${token}`)}": write "${clip(`NAT:${token}${rest}`)}" for the explicit form ` +
          "(no space after the colon), or begin the free text with a word",
      );
    }
    if (/^[0-9][0-9.:,]*$/.test(token) || NAMED.test(token)) {
      return invalid(`invalid public side "NAT: ${clip(token)}": ${EXPLICIT_FORMS}`);
    }
  }
  return { form: "compatible", text: comment.slice(3).replace(/^:/, "").trim() };
}
