// What a command gets on its stdin. Pure: the renderer makes it, exec.ts sends it.

/** A text, or lines (each followed by "\n"). Lines go to the spawn addon as they are: a
 *  restore payload is rendered as lines, and joining them first made a second copy of it
 *  (3.7 MB at 1000 guests) alive at the daemon's RSS peak (issue 10). */
export type Input = string | readonly string[];

/** input as one text. */
export function inputText(input: Input): string {
  if (typeof input === "string") return input;
  return input.length === 0 ? "" : `${input.join("\n")}\n`;
}
