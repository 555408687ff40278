// The load benchmark. On loopback only, it starts one origin sink and three workers under
// `wrangler dev` (the same workerd): (a) stripe-edge from a copy of build/, (b) the reference
// JavaScript worker (official `stripe` package), (c) the empty worker. It times each start-up,
// then drives every worker with the same signed events at every size, at a fixed concurrency,
// with a bounded count and time per run, and records throughput, latency percentiles and the
// workerd process's CPU time per request. Writes one JSON document.
//
// Usage: node bench/run.mjs PAYLOAD_DIR OUT_JSON
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import {
  CONCURRENCY, ROOT, RUNTIME, SECRET, drive, get, groupCpu, log, machineCpu, procStat, sleep, startSink,
  startWorker, stopAll,
} from "./harness.mjs";

const [payloadDir, outFile] = process.argv.slice(2);
// Requests measured per worker and size; each run also stops after RUN_SECONDS_MAX.
// Bare workerd answers several times faster than `wrangler dev`, so it gets more requests
// for a run of similar length.
const COUNTS = RUNTIME === "workerd"
  ? { "1KiB": 10000, "10KiB": 10000, "100KiB": 3000, "1MiB": 600 }
  : { "1KiB": 2000, "10KiB": 2000, "100KiB": 800, "1MiB": 200 };
const SCALE = Number(process.env.BENCH_SCALE ?? 1);
const RUN_SECONDS_MAX = Number(process.env.BENCH_RUN_SECONDS_MAX ?? 20);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 4);

async function main() {
  const manifest = JSON.parse(readFileSync(join(payloadDir, "manifest.json"), "utf8"));
  const sink = await startSink();
  log(`origin sink on ${sink.url}`);
  const origin = `${sink.url}/stripe/events`;

  // Started one after another, so each start-up time is measured on an otherwise idle box.
  const specs = [
    {
      key: "c", name: "empty", main: join(ROOT, "bench/empty/index.js"), vars: {},
    },
    {
      key: "b", name: "reference-js", main: join(ROOT, "bench/reference-js/index.js"),
      vars: { STRIPE_WEBHOOK_SECRET: SECRET, ORIGIN_URL: origin },
    },
    {
      key: "a", name: "stripe-edge", bundle: join(ROOT, "build"),
      vars: {
        STRIPE_WEBHOOK_SECRET: SECRET,
        ORIGIN_URL: origin,
        // Every event to the origin only: KV is not in the measured path.
        ROUTES: JSON.stringify([{ name: "all", events: ["*"], to: ["origin"] }]),
      },
      kv: true,
    },
  ];
  const workers = {};
  for (const spec of specs) workers[spec.key] = await startWorker(spec);
  const wranglerPids = Object.fromEntries(Object.values(workers).map((w) => [w.key, w.child.pid]));

  // Each worker's requests at a size are split into ROUNDS rounds, and the rounds of the three
  // workers alternate (order rotating), so that load from other jobs on a shared machine falls
  // on all three alike instead of on whichever ran during a burst. Sums over the rounds make
  // each row: requests/s is all requests over all measured seconds, percentiles are over all
  // latencies.
  const results = [];
  for (const payload of manifest.payloads) {
    const body = readFileSync(join(payloadDir, payload.file));
    const count = Math.max(20, Math.round(COUNTS[payload.label] * SCALE));
    const perRound = Math.max(10, Math.round(count / ROUNDS));
    const warmup = Math.max(10, Math.round(count / 10));
    const acc = {};
    for (const key of ["c", "b", "a"]) {
      await drive(workers[key].url, body, warmup, 10);
      acc[key] = { latencies: [], seconds: 0, statuses: {}, workerd: 0, wrangler: 0, driver: 0,
        sink: 0, busy: 0, total: 0, received: 0 };
    }
    for (let round = 0; round < ROUNDS; round++) {
      const order = ["c", "b", "a"].map((_, i, keys) => keys[(i + round) % keys.length]);
      for (const key of order) {
        const w = workers[key];
        const t = acc[key];
        const sinkBefore = JSON.parse((await get(`${sink.url}/stats`)).body).requests;
        const groupBefore = groupCpu(w.child.pid);
        const sinkCpuBefore = procStat(sink.child.pid)?.cpuSeconds ?? NaN;
        const selfBefore = process.cpuUsage();
        const machineBefore = machineCpu();
        const run = await drive(w.url, body, perRound, RUN_SECONDS_MAX / ROUNDS);
        const machineAfter = machineCpu();
        const selfCpu = process.cpuUsage(selfBefore);
        const groupAfter = groupCpu(w.child.pid);
        t.sink += (procStat(sink.child.pid)?.cpuSeconds ?? NaN) - sinkCpuBefore;
        t.workerd += groupAfter.workerd - groupBefore.workerd;
        t.wrangler += groupAfter.other - groupBefore.other;
        t.driver += (selfCpu.user + selfCpu.system) / 1e6;
        t.busy += machineAfter.busy - machineBefore.busy;
        t.total += machineAfter.total - machineBefore.total;
        t.latencies.push(...run.latencies);
        t.seconds += run.seconds;
        for (const [status, n] of Object.entries(run.statuses)) {
          t.statuses[status] = (t.statuses[status] ?? 0) + n;
        }
        t.received += JSON.parse((await get(`${sink.url}/stats`)).body).requests - sinkBefore;
      }
    }
    for (const key of ["c", "b", "a"]) {
      const w = workers[key];
      const t = acc[key];
      const latencies = t.latencies.sort((x, y) => x - y);
      const at = (q) => latencies[Math.min(latencies.length - 1, Math.round((latencies.length - 1) * q))];
      const requests = latencies.length;
      const row = {
        worker: key,
        name: w.name,
        size: payload.label,
        bytes: payload.bytes,
        concurrency: CONCURRENCY,
        rounds: ROUNDS,
        requests,
        seconds: t.seconds,
        rps: requests / t.seconds,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        statuses: t.statuses,
        workerd_cpu_ms_per_request: (t.workerd * 1000) / requests,
        wrangler_node_cpu_ms_per_request: (t.wrangler * 1000) / requests,
        driver_cpu_ms_per_request: (t.driver * 1000) / requests,
        sink_cpu_ms_per_request: (t.sink * 1000) / requests,
        // CPU the machine spent on anything but this benchmark during the runs (other jobs).
        foreign_cpu_share: Math.max(0, t.busy - t.workerd - t.wrangler - t.driver - t.sink) / t.total,
        origin_received: t.received,
      };
      results.push(row);
      log(
        `${payload.label.padStart(6)} ${w.name.padEnd(12)} ${row.rps.toFixed(1).padStart(8)} req/s` +
          `  p50 ${row.p50_ms.toFixed(2)} ms  p99 ${row.p99_ms.toFixed(2)} ms` +
          `  workerd CPU ${row.workerd_cpu_ms_per_request.toFixed(2)} ms/req` +
          ` wrangler-node ${row.wrangler_node_cpu_ms_per_request.toFixed(2)}` +
          ` foreign ${(row.foreign_cpu_share * 100).toFixed(0)}%` +
          `  statuses ${JSON.stringify(row.statuses)}  origin got ${row.origin_received}`,
      );
    }
  }

  // The worker's own log line carries duration_ms; keep its distribution for the record.
  const durations = workers.a
    .logText()
    .split("\n")
    .map((line) => line.match(/"duration_ms":(\d+)/)?.[1])
    .filter(Boolean)
    .map(Number);

  stopAll();
  await sleep(500);
  for (const w of Object.values(workers)) rmSync(w.dir, { recursive: true, force: true });

  const doc = {
    runtime: RUNTIME,
    scale: SCALE,
    concurrency: CONCURRENCY,
    rounds: ROUNDS,
    run_seconds_max: RUN_SECONDS_MAX,
    counts: Object.fromEntries(
      Object.entries(COUNTS).map(([k, v]) => [k, Math.max(20, Math.round(v * SCALE))]),
    ),
    startup_ms: Object.fromEntries(Object.values(workers).map((w) => [w.key, w.startupMs])),
    wrangler_pids: wranglerPids,
    stripe_edge_duration_ms_log: {
      lines: durations.length,
      max: durations.length ? Math.max(...durations) : null,
      mean: durations.length ? durations.reduce((s, x) => s + x, 0) / durations.length : null,
    },
    results,
  };
  mkdirSync(join(outFile, ".."), { recursive: true });
  writeFileSync(outFile, JSON.stringify(doc, null, 2) + "\n");
}

main().catch((error) => {
  console.error(error);
  stopAll();
  process.exit(1);
});
