import { describe, expect, it } from "vitest";
import { isNatComment, parseNatComment } from "../../../src/nat/trigger.js";

describe("NAT comment forms", () => {
  it.each([
    ["NAT", { form: "compatible", text: "" }],
    ["NAT ssh in", { form: "compatible", text: "ssh in" }],
    ["NAT\tssh", { form: "compatible", text: "ssh" }],
    ["NAT: ssh in", { form: "compatible", text: "ssh in" }],
    ["NAT:  ssh in", { form: "compatible", text: "ssh in" }],
    ["NAT: 2nd server", { form: "compatible", text: "2nd server" }],
    ["NAT:822", { form: "explicit", address: null, ports: [{ from: 822, to: 822 }], text: "" }],
    [
      "NAT:822 ssh in",
      { form: "explicit", address: null, ports: [{ from: 822, to: 822 }], text: "ssh in" },
    ],
    [
      "NAT:8000:8010",
      { form: "explicit", address: null, ports: [{ from: 8000, to: 8010 }], text: "" },
    ],
    [
      "NAT:80,8080",
      {
        form: "explicit",
        address: null,
        ports: [
          { from: 80, to: 80 },
          { from: 8080, to: 8080 },
        ],
        text: "",
      },
    ],
    [
      "NAT:203.0.113.5:822",
      { form: "explicit", address: "203.0.113.5", ports: [{ from: 822, to: 822 }], text: "" },
    ],
    [
      "NAT:203.0.113.5:8000:8010 x",
      { form: "explicit", address: "203.0.113.5", ports: [{ from: 8000, to: 8010 }], text: "x" },
    ],
    ["NAT:203.0.113.5", { form: "explicit", address: "203.0.113.5", ports: null, text: "" }],
    [
      "NAT:203.0.113.5 mail relay",
      { form: "explicit", address: "203.0.113.5", ports: null, text: "mail relay" },
    ],
  ])("%s", (comment, want) => {
    expect(isNatComment(comment)).toBe(true);
    expect(parseNatComment(comment)).toEqual(want);
  });

  it.each([
    "NAT:99999",
    "NAT:0",
    "NAT:8010:8000",
    "NAT:1.2.3",
    "NAT:300.1.1.1:22",
    "NAT:203.0.113.5:",
    "NAT:22;reboot",
    "NAT:203.0.113.5:ssh",
    // Issue 12: these were read as the compatible form on the rule's own port.
    "NAT:",
    "NAT:web server",
    "NAT:pubalias:8082",
    "NAT:[2001:db8::1]:8080",
    "NAT:2001:db8::1",
    "NAT: 8081",
    "NAT: 8000:8010 x",
    "NAT: 203.0.113.5:822",
    "NAT: [2001:db8::1]:8080",
    "NAT: pubalias:8082",
    "NAT: 99999",
  ])("invalid explicit form %s", (comment) => {
    expect(parseNatComment(comment)).toMatchObject({ form: "invalid" });
  });

  it.each([
    null,
    "",
    "NATIVE",
    "NATs",
    "nat",
    "Nat ssh",
    " NAT",
    "no NAT",
    "#NAT",
    "NAT-ssh",
    "NAT_1",
  ])("not NAT: %s", (comment) => {
    expect(isNatComment(comment)).toBe(false);
    expect(parseNatComment(comment)).toBeNull();
  });
});
