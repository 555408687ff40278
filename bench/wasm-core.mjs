// CPU per event of stripe-edge's core inside wasm, in the runtime. Serves bench/wasm-core (the
// core linked into a worker of its own) under workerd on loopback, and for every payload size
// and step asks it to run the step `n` times over the event. The workerd process's CPU time
// around each request, less that of the same request with n = 0 (the request's handling and
// the copy of the body into wasm), divided by n, is the step's CPU per event. n is chosen so
// that each measured request takes about CPU_TARGET_S of CPU: /proc counts in 10 ms ticks.
//
// Usage: node bench/wasm-core.mjs PAYLOAD_DIR OUT_JSON
import { readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import { join } from "node:path";

import { HOST, ROOT, log, procStat, startWorker, stopAll } from "./harness.mjs";

const [payloadDir, outFile] = process.argv.slice(2);
const STEPS = ["hmac", "webcrypto", "verify", "parse", "decide", "decide_tags"];
const CPU_TARGET_S = Number(process.env.BENCH_WASM_CPU_S ?? 0.6);
const REPEATS = 3;

function post(url, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: "POST", agent: false, headers: { "content-length": body.length } }, (res) => {
      let text = "";
      res.on("data", (c) => (text += c));
      res.on("end", () => resolve({ status: res.statusCode, text }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

async function main() {
  const manifest = JSON.parse(readFileSync(join(payloadDir, "manifest.json"), "utf8"));
  const w = await startWorker({ key: "core", name: "stripe-edge-core", bundle: join(ROOT, "bench/wasm-core/build"),
    vars: {}, runtime: "workerd" });
  const cpu = () => procStat(w.workerdPid).cpuSeconds;
  // CPU seconds the worker spent on one request running `step` n times.
  const run = async (step, n, body) => {
    const before = cpu();
    const res = await post(`${w.url}/?step=${step}&n=${n}`, body);
    if (res.status !== 200) throw new Error(`${step} n=${n}: ${res.status} ${res.text}`);
    return cpu() - before;
  };
  const sizes = [];
  for (const payload of manifest.payloads) {
    const body = readFileSync(join(payloadDir, payload.file));
    const row = { label: payload.label, bytes: payload.bytes };
    for (const step of STEPS) {
      // Calibrate by wall time (the clock inside the worker stands still while it computes),
      // then measure.
      let n = 1;
      for (;;) {
        const t0 = performance.now();
        await run(step, n, body);
        const seconds = (performance.now() - t0) / 1000;
        if (seconds >= CPU_TARGET_S / 4 || n >= 1 << 24) {
          n = Math.max(1, Math.round((n * CPU_TARGET_S) / Math.max(seconds, 1e-3)));
          break;
        }
        n *= 4;
      }
      const samples = [];
      for (let i = 0; i < REPEATS; i++) {
        const base = await run(step, 0, body);
        const busy = await run(step, n, body);
        samples.push(((busy - base) * 1e6) / n);
      }
      samples.sort((x, y) => x - y);
      row[`${step}_us`] = { median: samples[Math.floor(samples.length / 2)], n, samples };
      log(`in wasm ${payload.label.padStart(6)} ${step.padEnd(6)} ${row[`${step}_us`].median.toFixed(1)} µs/event (n = ${n})`);
    }
    sizes.push(row);
  }
  stopAll();
  writeFileSync(outFile, JSON.stringify({ runtime: "workerd", host: HOST, sizes }, null, 2) + "\n");
}

main().catch((error) => {
  console.error(error);
  stopAll();
  process.exit(1);
});
