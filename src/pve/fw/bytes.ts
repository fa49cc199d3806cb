// A .fw file's text as pve-firewall's Perl sees it. pmxcfs hands pve-firewall raw bytes and Perl
// matches them as Latin-1 code points, so the grammar works on a "byte string" (one char per
// byte) and every pattern sees what Perl's does, with Perl's ASCII whitespace classes spelled out
// (JS \s would also match U+00A0 etc.). Only user-visible text (comments, messages) is decoded
// from UTF-8. Also here: the file-level steps before any section applies (empty file, line
// split, trimming, comment and blank lines) and Perl's notions of truth and hash keys.

const CHUNK = 8192;
// biome-ignore lint/suspicious/noControlCharactersInRegex: ASCII is the point
const ASCII = /^[\u0000-\u007f]*$/;
const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8");

// ASCII text is its own UTF-8 and its own byte string: the conversions are identities there,
// and nearly every .fw file and field is ASCII (at 1000 guests the two conversions were a
// quarter of parsing every file, most of it allocating what they hand back unchanged).
export function toByteString(input: string | Uint8Array): string {
  if (typeof input === "string" && ASCII.test(input)) return input;
  const bytes = typeof input === "string" ? encoder.encode(input) : input;
  let out = "";
  // Chunked: spreading a whole large file into one call would overflow the argument stack.
  for (let i = 0; i < bytes.length; i += CHUNK) {
    out += String.fromCharCode(...bytes.subarray(i, i + CHUNK));
  }
  return out;
}

export function fromByteString(bin: string): string {
  if (ASCII.test(bin)) return bin;
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i) & 255;
  return decoder.decode(bytes);
}

const MAX_SHOWN = 80;

/** Quoted, decoded, control characters escaped and long text cut: safe to print in a message. */
export function show(bin: string): string {
  let text = fromByteString(bin);
  let cut = false;
  if (text.length > MAX_SHOWN) {
    text = text.slice(0, MAX_SHOWN);
    cut = true;
  }
  // biome-ignore lint/suspicious/noControlCharactersInRegex: escaping them is the point
  const escaped = text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => {
    if (c === "\t") return "\\t";
    if (c === "\r") return "\\r";
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16)}`;
  });
  return `'${escaped}${cut ? "…" : ""}'`;
}

/** Sets an own key even when it is "__proto__" (names come from the file). */
export function setKey<T>(record: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(record, key, {
    value,
    enumerable: true,
    writable: true,
    configurable: true,
  });
}

/** Perl truthiness of an optional string value: "" and "0" are false. */
export function truthy(v: string | undefined): v is string {
  return v !== undefined && v !== "" && v !== "0";
}

/** Perl's \s and \S on byte strings. */
export const S = "[ \\t\\n\\r\\f\\v]";
export const NS = "[^ \\t\\n\\r\\f\\v]";
export const re = (source: string, flags = "") => new RegExp(source, flags);

/** Perl's `s/<comment>$//` with the comment's text kept: what is left of `line`, and the text of
 *  the comment `pattern` (group 1) finds, if any. */
export function cutComment(line: string, pattern: RegExp): [rest: string, comment?: string] {
  const c = pattern.exec(line);
  return c ? [line.slice(0, c.index), c[1] as string] : [line];
}

/** Perl's `\h` on bytes: tab, space, no-break space. */
const TRIM = /^[\t \xa0]*([^\n]*?)[\t \xa0]*$/;
const BLANK = re(`^${S}*$`);

/**
 * generic_fw_config_parser's outer loop: the lines a section gets to see, trimmed, with their
 * 1-based numbers; comment and blank lines are skipped. Only "\n" ends a line: a CR stays on
 * the line (pve-firewall does not strip it either), and so does a byte order mark.
 */
export function contentLines(raw: string): Array<{ lineNo: number; line: string }> {
  // `return {} if !$raw`: an empty file, or one holding just "0", is no file at all.
  if (raw === "" || raw === "0") return [];
  const out: Array<{ lineNo: number; line: string }> = [];
  const lines = raw.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = (TRIM.exec(lines[i] as string) as RegExpExecArray)[1] as string;
    if (line.startsWith("#") || BLANK.test(line)) continue;
    out.push({ lineNo: i + 1, line });
  }
  return out;
}

/** Why a line that should be a header is not one because of the file's encoding, or null. */
export function encodingHint(line: string): string | null {
  if (line.startsWith("\xef\xbb\xbf")) {
    return " (the file starts with a UTF-8 byte order mark, which pve-firewall does not skip)";
  }
  if (line.endsWith("\r")) {
    return " (Windows line ends: pve-firewall does not take a header ending in CR as a header)";
  }
  return null;
}
