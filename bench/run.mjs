// The load benchmark. On loopback only, it starts one origin sink and three workers under
// `wrangler dev` (the same workerd): (a) stripe-edge from a copy of build/, (b) the reference
// JavaScript worker (official `stripe` package), (c) the empty worker. It times each start-up,
// then drives every worker with the same signed events at every size, at a fixed concurrency,
// with a bounded count and time per run, and records throughput, latency percentiles and the
// workerd process's CPU time per request. Writes one JSON document.
//
// Usage: node bench/run.mjs PAYLOAD_DIR OUT_JSON
import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

const ROOT = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
const [payloadDir, outFile] = process.argv.slice(2);
const HOST = "127.0.0.1";
const SECRET = "whsec_bench_load_secret";
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);
// Requests measured per worker and size; each run also stops after RUN_SECONDS_MAX.
const COUNTS = { "1KiB": 2000, "10KiB": 2000, "100KiB": 800, "1MiB": 200 };
const SCALE = Number(process.env.BENCH_SCALE ?? 1);
const RUN_SECONDS_MAX = Number(process.env.BENCH_RUN_SECONDS_MAX ?? 20);
const STARTUP_LIMIT_MS = 120_000;
const CLK_TCK = 100; // Linux USER_HZ, what /proc/<pid>/stat counts in.

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...args) => console.error("[bench]", ...args);

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, HOST, () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

// Every process we start runs in its own process group, ended by its own id at the end.
const started = [];
function stopAll() {
  for (const child of started.splice(0)) {
    try {
      process.kill(-child.pid, "SIGTERM");
    } catch {}
  }
}
process.on("exit", stopAll);
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    stopAll();
    process.exit(130);
  });
}

async function startSink() {
  const child = spawn(process.execPath, [join(ROOT, "bench/sink.mjs")], {
    detached: true,
    stdio: ["ignore", "pipe", "inherit"],
  });
  started.push(child);
  const port = await new Promise((resolve, reject) => {
    let text = "";
    child.stdout.on("data", (chunk) => {
      text += chunk;
      const line = text.split("\n")[0];
      if (text.includes("\n")) resolve(JSON.parse(line).port);
    });
    child.once("exit", () => reject(new Error("sink exited")));
  });
  return { child, port, url: `http://${HOST}:${port}` };
}

function get(url) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: 5000 }, (res) => {
      let body = "";
      res.on("data", (c) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode, body }));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
  });
}

const compatibilityDate = readFileSync(join(ROOT, "wrangler.toml"), "utf8").match(
  /^compatibility_date\s*=\s*"([^"]+)"/m,
)[1];

// Writes a wrangler.toml and .dev.vars for one worker in a temporary directory, starts
// `wrangler dev` there and waits for the first 200 on /health.
async function startWorker({ key, name, main, vars, extraToml = "" }) {
  const dir = mkdtempSync(join(tmpdir(), `stripe-edge-bench-${key}-`));
  let mainPath = main;
  if (key === "a") {
    // A private copy of the bundle, so a rebuild of build/ during the run cannot change it.
    cpSync(join(ROOT, "build"), join(dir, "bundle"), { recursive: true });
    mainPath = join(dir, "bundle/worker/shim.mjs");
  }
  writeFileSync(
    join(dir, "wrangler.toml"),
    [
      `name = ${JSON.stringify(name)}`,
      `main = ${JSON.stringify(mainPath)}`,
      `compatibility_date = ${JSON.stringify(compatibilityDate)}`,
      extraToml,
    ].join("\n") + "\n",
  );
  writeFileSync(
    join(dir, ".dev.vars"),
    Object.entries(vars)
      .map(([k, v]) => `${k}='${v}'`)
      .join("\n") + "\n",
  );
  const port = await freePort();
  const inspectorPort = await freePort();
  const logFile = join(dir, "wrangler.log");
  const t0 = performance.now();
  const child = spawn(
    join(ROOT, "node_modules/.bin/wrangler"),
    ["dev", "--ip", HOST, "--port", String(port), "--inspector-port", String(inspectorPort),
      "--config", join(dir, "wrangler.toml"), "--persist-to", join(dir, "state")],
    {
      cwd: dir,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, WRANGLER_SEND_METRICS: "false", NO_COLOR: "1", FORCE_COLOR: "0" },
    },
  );
  started.push(child);
  const logChunks = [];
  child.stdout.on("data", (c) => logChunks.push(c));
  child.stderr.on("data", (c) => logChunks.push(c));
  const url = `http://${HOST}:${port}`;
  let startupMs = null;
  while (performance.now() - t0 < STARTUP_LIMIT_MS) {
    try {
      const res = await get(`${url}/health`);
      if (res.status === 200) {
        startupMs = performance.now() - t0;
        break;
      }
    } catch {}
    await sleep(25);
  }
  if (startupMs === null) {
    throw new Error(`${name} did not start:\n${Buffer.concat(logChunks).toString()}`);
  }
  const worker = { key, name, dir, child, url, startupMs, logChunks, logFile };
  worker.workerdPid = await findWorkerd(child.pid);
  log(`${name}: first 200 on /health ${startupMs.toFixed(0)} ms after spawn; workerd pid ${worker.workerdPid}`);
  return worker;
}

function procStat(pid) {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
    // Fields after "(comm)": state(0) ppid(1) pgrp(2) ... utime(11) stime(12).
    return {
      comm: text.slice(text.indexOf("(") + 1, text.lastIndexOf(")")),
      pgrp: Number(fields[2]),
      cpuSeconds: (Number(fields[11]) + Number(fields[12])) / CLK_TCK,
    };
  } catch {
    return null;
  }
}

// CPU seconds of every process in a process group, split into workerd and the rest (the
// wrangler launcher and its Node CLI, which may proxy requests).
function groupCpu(groupId) {
  const total = { workerd: 0, other: 0 };
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = procStat(entry);
    if (!stat || stat.pgrp !== groupId) continue;
    total[stat.comm.startsWith("workerd") ? "workerd" : "other"] += stat.cpuSeconds;
  }
  return total;
}

// Busy and total CPU seconds of the whole machine, from /proc/stat.
function machineCpu() {
  const fields = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  const total = fields.reduce((s, x) => s + x, 0) / CLK_TCK;
  const idle = (fields[3] + fields[4]) / CLK_TCK;
  return { busy: total - idle, total };
}

async function findWorkerd(groupId) {
  for (let i = 0; i < 100; i++) {
    for (const entry of readdirSync("/proc")) {
      if (!/^\d+$/.test(entry)) continue;
      const stat = procStat(entry);
      if (stat && stat.pgrp === groupId && stat.comm.startsWith("workerd")) return Number(entry);
    }
    await sleep(50);
  }
  return null;
}

function sign(body) {
  const t = Math.floor(Date.now() / 1000);
  const v1 = createHmac("sha256", SECRET).update(`${t}.`).update(body).digest("hex");
  return `t=${t},v1=${v1}`;
}

// Sends `count` POSTs of `body` to `url` with `CONCURRENCY` in flight over keep-alive
// connections, stopping early after `secondsMax`. Returns latencies and statuses.
async function drive(url, body, count, secondsMax) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const headers = {
    "content-type": "application/json",
    "content-length": String(body.length),
    "stripe-signature": sign(body),
  };
  const latencies = [];
  const statuses = {};
  let issued = 0;
  const deadline = performance.now() + secondsMax * 1000;
  const one = () =>
    new Promise((resolve) => {
      const t0 = performance.now();
      const req = http.request(`${url}/webhook`, { method: "POST", agent, headers }, (res) => {
        res.resume();
        res.on("end", () => {
          latencies.push(performance.now() - t0);
          statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
          resolve();
        });
      });
      req.on("error", (e) => {
        statuses[e.code ?? "error"] = (statuses[e.code ?? "error"] ?? 0) + 1;
        resolve();
      });
      req.end(body);
    });
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (issued < count && performance.now() < deadline) {
        issued += 1;
        await one();
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  agent.destroy();
  latencies.sort((x, y) => x - y);
  const at = (q) => latencies[Math.min(latencies.length - 1, Math.round((latencies.length - 1) * q))];
  return {
    requests: latencies.length,
    seconds,
    rps: latencies.length / seconds,
    p50_ms: at(0.5),
    p99_ms: at(0.99),
    statuses,
  };
}

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
      key: "a", name: "stripe-edge", main: null,
      vars: {
        STRIPE_WEBHOOK_SECRET: SECRET,
        ORIGIN_URL: origin,
        // Every event to the origin only: KV is not in the measured path.
        ROUTES: JSON.stringify([{ name: "all", events: ["*"], to: ["origin"] }]),
      },
      extraToml: '[[kv_namespaces]]\nbinding = "EVENTS"\nid = "00000000000000000000000000000000"',
    },
  ];
  const workers = {};
  for (const spec of specs) workers[spec.key] = await startWorker(spec);
  const wranglerPids = Object.fromEntries(Object.values(workers).map((w) => [w.key, w.child.pid]));

  const results = [];
  for (const payload of manifest.payloads) {
    const body = readFileSync(join(payloadDir, payload.file));
    const count = Math.max(20, Math.round(COUNTS[payload.label] * SCALE));
    const warmup = Math.max(10, Math.round(count / 10));
    for (const key of ["c", "b", "a"]) {
      const w = workers[key];
      await drive(w.url, body, warmup, 10);
      const sinkBefore = JSON.parse((await get(`${sink.url}/stats`)).body).requests;
      const groupBefore = groupCpu(w.child.pid);
      const sinkCpuBefore = procStat(sink.child.pid)?.cpuSeconds ?? NaN;
      const selfBefore = process.cpuUsage();
      const machineBefore = machineCpu();
      const run = await drive(w.url, body, count, RUN_SECONDS_MAX);
      const machineAfter = machineCpu();
      const selfCpu = process.cpuUsage(selfBefore);
      const sinkCpu = (procStat(sink.child.pid)?.cpuSeconds ?? NaN) - sinkCpuBefore;
      const groupAfter = groupCpu(w.child.pid);
      const workerdCpu = groupAfter.workerd - groupBefore.workerd;
      const wranglerCpu = groupAfter.other - groupBefore.other;
      const driverCpu = (selfCpu.user + selfCpu.system) / 1e6;
      const busy = machineAfter.busy - machineBefore.busy;
      const sinkAfter = JSON.parse((await get(`${sink.url}/stats`)).body).requests;
      const row = {
        worker: key,
        name: w.name,
        size: payload.label,
        bytes: payload.bytes,
        concurrency: CONCURRENCY,
        ...run,
        workerd_cpu_ms_per_request: (workerdCpu * 1000) / run.requests,
        wrangler_node_cpu_ms_per_request: (wranglerCpu * 1000) / run.requests,
        driver_cpu_ms_per_request: (driverCpu * 1000) / run.requests,
        sink_cpu_ms_per_request: (sinkCpu * 1000) / run.requests,
        // CPU the machine spent on anything but this benchmark during the run (other jobs).
        foreign_cpu_share: Math.max(0, busy - workerdCpu - wranglerCpu - driverCpu - sinkCpu) /
          (machineAfter.total - machineBefore.total),
        origin_received: sinkAfter - sinkBefore,
      };
      results.push(row);
      log(
        `${payload.label.padStart(6)} ${w.name.padEnd(12)} ${run.rps.toFixed(1).padStart(8)} req/s` +
          `  p50 ${run.p50_ms.toFixed(2)} ms  p99 ${run.p99_ms.toFixed(2)} ms` +
          `  workerd CPU ${row.workerd_cpu_ms_per_request.toFixed(2)} ms/req` +
          ` wrangler-node ${row.wrangler_node_cpu_ms_per_request.toFixed(2)}` +
          ` foreign ${(row.foreign_cpu_share * 100).toFixed(0)}%` +
          `  statuses ${JSON.stringify(run.statuses)}  origin got ${row.origin_received}`,
      );
    }
  }

  // The worker's own log line carries duration_ms; keep its distribution for the record.
  const durations = Buffer.concat(workers.a.logChunks)
    .toString()
    .split("\n")
    .map((line) => line.match(/"duration_ms":(\d+)/)?.[1])
    .filter(Boolean)
    .map(Number);

  stopAll();
  await sleep(500);
  for (const w of Object.values(workers)) rmSync(w.dir, { recursive: true, force: true });

  const doc = {
    concurrency: CONCURRENCY,
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
