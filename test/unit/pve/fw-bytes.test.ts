import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { fromByteString, toByteString } from "../../../src/pve/fw/bytes.js";

// The conversions as they were before their ASCII shortcut: every code point goes through
// UTF-8 bytes. The shortcut must give the same string for every input, ASCII or not.
function toBytesReference(input: string | Uint8Array): string {
  const bytes = typeof input === "string" ? new TextEncoder().encode(input) : input;
  let out = "";
  for (const b of bytes) out += String.fromCharCode(b);
  return out;
}
function fromBytesReference(bin: string): string {
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i) & 255;
  return new TextDecoder("utf-8").decode(bytes);
}

const text = fc.oneof(
  fc.string({ unit: "binary-ascii" }),
  fc.string({ unit: "grapheme" }),
  fc.string({ unit: "binary" }),
);
const byteString = fc.uint8Array({ maxLength: 64 }).map((b) => String.fromCharCode(...b));

describe("fw/bytes: byte strings", () => {
  it("toByteString of a string and of its UTF-8 bytes match the reference", () => {
    fc.assert(
      fc.property(text, (s) => {
        expect(toByteString(s)).toBe(toBytesReference(s));
        const bytes = new TextEncoder().encode(s);
        expect(toByteString(bytes)).toBe(toBytesReference(bytes));
      }),
      { numRuns: 3000 },
    );
  });

  it("fromByteString matches the reference on any bytes, valid UTF-8 or not", () => {
    fc.assert(
      fc.property(fc.oneof(byteString, text.map(toBytesReference)), (bin) => {
        expect(fromByteString(bin)).toBe(fromBytesReference(bin));
      }),
      { numRuns: 3000 },
    );
  });

  it("non-ASCII text is converted, not passed through", () => {
    expect(toByteString("é")).toBe("\u00c3\u00a9");
    expect(fromByteString("\u00c3\u00a9")).toBe("é");
    expect(fromByteString("\u00ff")).toBe("\ufffd");
    expect(toByteString("\u007f")).toBe("\u007f");
    expect(toByteString("\u0080")).toBe("\u00c2\u0080");
  });

  it("a file larger than one chunk of bytes converts whole", () => {
    const big = "é".repeat(20_000);
    expect(toByteString(big)).toBe(toBytesReference(big));
    expect(fromByteString(toByteString(big))).toBe(big);
  });
});
