import { isIPv4 } from "../pve/address.js";
import { type PortRange, parsePorts } from "../pve/ports.js";

// The NAT trigger (SPEC §2.2): a comment that begins with the word NAT. "NAT", "NAT ssh",
// "NAT: ssh" are the compatible form; "NAT:" immediately followed by a digit is the explicit
// form naming the public side. The word is case-sensitive, as the old patch had it.

export type NatComment =
  | { form: "compatible"; text: string }
  | { form: "explicit"; address: string | null; ports: PortRange[] | null; text: string }
  | { form: "invalid"; message: string };

const WORD = /^NAT(?=$|[\s:])/;
const EXPLICIT = /^NAT:([0-9]\S*)(?:\s+(.*))?$/s;
const WITH_ADDRESS = /^([0-9]+\.[0-9]+\.[0-9]+\.[0-9]+)(?::(.+))?$/;

export function isNatComment(comment: string | null): boolean {
  return comment !== null && WORD.test(comment);
}

function publicPorts(text: string): PortRange[] | null {
  if (!/^[0-9][0-9:,]*$/.test(text)) return null;
  const ports = parsePorts(text);
  if ("error" in ports || ports.length === 0 || ports.some((p) => p.from === 0)) return null;
  return ports;
}

/** null: not a NAT comment. */
export function parseNatComment(comment: string | null): NatComment | null {
  if (comment === null || !WORD.test(comment)) return null;
  const m = EXPLICIT.exec(comment);
  if (!m) return { form: "compatible", text: comment.slice(3).replace(/^:/, "").trim() };
  const token = m[1] as string;
  const text = (m[2] ?? "").trim();
  const invalid = {
    form: "invalid" as const,
    message:
      `invalid public side 'NAT:${token.slice(0, 40)}': expected NAT:port, NAT:from:to, ` +
      "NAT:address or NAT:address:port",
  };
  const a = WITH_ADDRESS.exec(token);
  if (a) {
    if (!isIPv4(a[1] as string)) return invalid;
    if (a[2] === undefined) return { form: "explicit", address: a[1] as string, ports: null, text };
    const ports = publicPorts(a[2]);
    return ports ? { form: "explicit", address: a[1] as string, ports, text } : invalid;
  }
  const ports = publicPorts(token);
  return ports ? { form: "explicit", address: null, ports, text } : invalid;
}
