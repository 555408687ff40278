// Writes the benchmark's events: real fixtures grown to exactly 1 KiB, 10 KiB, 100 KiB and
// 1 MiB of compact JSON. Large Stripe events are invoices with many line items, so the big
// ones are invoice.paid with its line item repeated; a metadata string pads to the exact size.
// Usage: node bench/payloads.mjs OUT_DIR
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const root = new URL("../", import.meta.url).pathname;
const out = process.argv[2] ?? join(root, "bench/out/payloads");
const fixture = (name) =>
  JSON.parse(readFileSync(join(root, "fixtures/events", `${name}.json`), "utf8"));
const bytes = (value) => Buffer.byteLength(JSON.stringify(value));

export const SIZES = [
  { label: "1KiB", bytes: 1024 },
  { label: "10KiB", bytes: 10 * 1024 },
  { label: "100KiB", bytes: 100 * 1024 },
  { label: "1MiB", bytes: 1024 * 1024 },
];

function grow(target) {
  let event;
  if (target < 4096) {
    event = fixture("transfer.created");
  } else {
    event = fixture("invoice.paid");
    const lines = event.data.object.lines;
    const item = lines.data[0];
    const itemBytes = bytes(item) + 1;
    for (let n = 1; bytes(event) + itemBytes + 64 < target; n++) {
      lines.data.push({ ...item, id: `${item.id}_${n}` });
    }
    lines.total_count = lines.data.length;
  }
  event.data.object.metadata = { ...event.data.object.metadata, bench_pad: "" };
  const missing = target - bytes(event);
  if (missing < 0) throw new Error(`base event is already larger than ${target} bytes`);
  event.data.object.metadata.bench_pad = "x".repeat(missing);
  const text = JSON.stringify(event);
  if (Buffer.byteLength(text) !== target) throw new Error(`size ${target} not reached`);
  return text;
}

mkdirSync(out, { recursive: true });
const payloads = SIZES.map(({ label, bytes: target }) => {
  const file = `${label}.json`;
  writeFileSync(join(out, file), grow(target));
  return { label, file, bytes: target };
});
writeFileSync(join(out, "manifest.json"), JSON.stringify({ payloads }, null, 2) + "\n");
console.log(payloads.map((p) => `${p.label}=${p.bytes}B`).join(" "));
