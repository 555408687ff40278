// A/B comparison for one optimization at a time: several stripe-edge bundles (and, for
// scale, the reference JS worker and the empty worker) started side by side under the same
// local workerd and driven in alternating rounds with the same signed event, so that load
// from other jobs on the box falls on every variant alike. Prints, per variant, the median
// over rounds of requests/s and of workerd and wrangler-Node CPU per request.
//
// Usage: node bench/compare.mjs PAYLOAD_DIR SIZE VARIANT...
//   VARIANT is LABEL=BUNDLE_DIR (a worker-build output such as build/), or `ref` or `empty`.
//   BENCH_ROUNDS (default 3) rounds of BENCH_COUNT (default 1000) requests per variant.
//   A LABEL ending in `-ledger` (or BENCH_LEDGER=1, for every stripe-edge variant) adds the
//   LEDGER Durable Object binding, so dedupe's claim and settle are in the path.
import { readFileSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";

import { ROOT, RUNTIME, SECRET, drive, groupCpu, log, sleep, startSink, startWorker, stopAll } from "./harness.mjs";

const [payloadDir, size, ...variantArgs] = process.argv.slice(2);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const COUNT = Number(process.env.BENCH_COUNT ?? 1000);
const LEDGER = process.env.BENCH_LEDGER === "1";

async function main() {
  if (!size || variantArgs.length === 0) {
    console.error("usage: node bench/compare.mjs PAYLOAD_DIR SIZE LABEL=BUNDLE_DIR|ref|empty ...");
    process.exit(2);
  }
  const manifest = JSON.parse(readFileSync(join(payloadDir, "manifest.json"), "utf8"));
  const payload = manifest.payloads.find((p) => p.label === size);
  if (!payload) throw new Error(`no payload ${size} in ${payloadDir}`);
  const body = readFileSync(join(payloadDir, payload.file));
  const sink = await startSink();
  const origin = `${sink.url}/stripe/events`;

  const workers = [];
  for (const [i, arg] of variantArgs.entries()) {
    let spec;
    if (arg === "ref") {
      spec = { name: "ref", main: join(ROOT, "bench/reference-js/index.js"),
        vars: { STRIPE_WEBHOOK_SECRET: SECRET, ORIGIN_URL: origin } };
    } else if (arg === "empty") {
      spec = { name: "empty", main: join(ROOT, "bench/empty/index.js"), vars: {} };
    } else {
      const [name, dir] = arg.split("=");
      spec = { name, bundle: resolve(dir),
        vars: { STRIPE_WEBHOOK_SECRET: SECRET, ORIGIN_URL: origin,
          ROUTES: JSON.stringify([{ name: "all", events: ["*"], to: ["origin"] }]) },
        kv: true, ledger: LEDGER || name.endsWith("-ledger") };
    }
    workers.push({ ...(await startWorker({ key: `v${i}`, ...spec })), samples: [] });
  }

  for (let round = 0; round < ROUNDS; round++) {
    // Rotate the order each round so no variant always runs first or last.
    const order = workers.map((_, i) => workers[(i + round) % workers.length]);
    for (const w of order) {
      await drive(w.url, body, Math.max(20, COUNT / 10), 10);
      const before = groupCpu(w.child.pid);
      const run = await drive(w.url, body, COUNT, 60);
      const after = groupCpu(w.child.pid);
      const bad = Object.entries(run.statuses).filter(([s]) => s !== "200");
      w.samples.push({
        rps: run.rps,
        p99: run.p99_ms,
        workerd: ((after.workerd - before.workerd) * 1000) / run.requests,
        node: ((after.other - before.other) * 1000) / run.requests,
      });
      log(`round ${round + 1} ${w.name.padEnd(12)} ${run.rps.toFixed(1)} req/s p99 ${run.p99_ms.toFixed(1)} ms` +
        ` workerd ${w.samples.at(-1).workerd.toFixed(2)} ms/req node ${w.samples.at(-1).node.toFixed(2)} ms/req` +
        (bad.length ? ` NON-200 ${JSON.stringify(run.statuses)}` : ""));
    }
  }
  const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor((xs.length - 1) / 2)];
  const first = workers[0];
  console.log(`${size}, ${ROUNDS} rounds of ${COUNT}${LEDGER ? ", with LEDGER" : ""}, under ${RUNTIME}: medians`);
  console.log("variant        req/s   vs first   p99 ms   workerd ms/req   node ms/req");
  for (const w of workers) {
    const m = (k) => median(w.samples.map((s) => s[k]));
    console.log(`${w.name.padEnd(12)} ${m("rps").toFixed(1).padStart(7)} ${(m("rps") / median(first.samples.map((s) => s.rps))).toFixed(2).padStart(9)}` +
      ` ${m("p99").toFixed(1).padStart(8)} ${m("workerd").toFixed(2).padStart(16)} ${m("node").toFixed(2).padStart(13)}`);
  }
  stopAll();
  await sleep(500);
  for (const w of workers) rmSync(w.dir, { recursive: true, force: true });
}

main().catch((error) => {
  console.error(error);
  stopAll();
  process.exit(1);
});
