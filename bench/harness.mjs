// What the load benchmark (run.mjs) and the A/B comparison (compare.mjs) share: on loopback
// only, an origin sink, workers under `wrangler dev`, a load driver, and CPU accounting from
// /proc. Every process started here runs in its own process group and is ended by its id.
import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import {
  closeSync, cpSync, existsSync, mkdtempSync, openSync, readFileSync, readdirSync, writeFileSync,
} from "node:fs";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const ROOT = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
export const HOST = "127.0.0.1";
export const SECRET = "whsec_bench_load_secret";
export const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);
const STARTUP_LIMIT_MS = 120_000;
const CLK_TCK = 100; // Linux USER_HZ, what /proc/<pid>/stat counts in.

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const log = (...args) => console.error("[bench]", ...args);

export function freePort() {
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
export function stopAll() {
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

export async function startSink() {
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

export function get(url) {
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

// Where the workers run. `workerd` (the default): each worker is bundled exactly as
// `wrangler deploy` would upload it (`wrangler deploy --dry-run --outdir`) and served by the
// workerd binary wrangler ships, with a generated config and nothing else in the process:
// the closest this machine gets to the runtime on Cloudflare. `wrangler`: `wrangler dev`,
// what a user runs locally, which adds its dev middleware, an inspector attached to the
// isolate (every console.log and subrequest becomes an event that wrangler's Node process
// receives and prints) and that Node process beside workerd.
export const RUNTIME = process.env.BENCH_RUNTIME ?? "workerd";
const WORKERD = join(ROOT, "node_modules/@cloudflare/workerd-linux-64/bin/workerd");

const KV_TOML = '[[kv_namespaces]]\nbinding = "EVENTS"\nid = "00000000000000000000000000000000"';
const LEDGER_TOML = [
  "[[durable_objects.bindings]]",
  'name = "LEDGER"',
  'class_name = "EventLedger"',
  "[[migrations]]",
  'tag = "v1"',
  'new_sqlite_classes = ["EventLedger"]',
].join("\n");

// Starts one worker in a temporary directory and waits for the first 200 on /health.
// `bundle` is a worker-build output (build/ for stripe-edge), `main` a plain module.
// `kv` adds the EVENTS namespace (wrangler only: the benchmark routes every event to the
// origin, so KV is never in the measured path); `ledger` adds the LEDGER Durable Object;
// `inspect` opens workerd's inspector on `inspectorPort` (wrangler dev always opens one).
export async function startWorker({ key, name, main, bundle, vars, kv = false, ledger = false,
  runtime = RUNTIME, inspect = false }) {
  const dir = mkdtempSync(join(tmpdir(), `stripe-edge-bench-${key}-`));
  let mainPath = main;
  if (bundle) {
    // A private copy of a worker-build bundle (build/ for stripe-edge), so a rebuild during
    // the run cannot change it.
    cpSync(bundle, join(dir, "bundle"), { recursive: true });
    // js/entry.mjs since the lean entry; worker-build's own shim in older bundles.
    const entry = join(dir, "bundle/worker/entry.mjs");
    mainPath = existsSync(entry) ? entry : join(dir, "bundle/worker/shim.mjs");
  }
  const extraToml = [kv && runtime === "wrangler" ? KV_TOML : "", ledger ? LEDGER_TOML : ""];
  writeFileSync(
    join(dir, "wrangler.toml"),
    [
      `name = ${JSON.stringify(name)}`,
      `main = ${JSON.stringify(mainPath)}`,
      `compatibility_date = ${JSON.stringify(compatibilityDate)}`,
      ...extraToml,
    ].join("\n") + "\n",
  );
  const port = await freePort();
  const inspectorPort = await freePort();
  const env = { ...process.env, WRANGLER_SEND_METRICS: "false", NO_COLOR: "1", FORCE_COLOR: "0" };
  // The worker's output goes to a file, as logs on Cloudflare leave the isolate without
  // waiting on a reader: through a pipe read by this busy process, a full pipe would stall
  // the worker's log writes and show up as latency.
  const logFile = join(dir, "worker.log");
  const logFd = openSync(logFile, "w");
  let child;
  let t0;
  if (runtime === "wrangler") {
    writeFileSync(
      join(dir, ".dev.vars"),
      Object.entries(vars)
        .map(([k, v]) => `${k}='${v}'`)
        .join("\n") + "\n",
    );
    t0 = performance.now();
    child = spawn(
      join(ROOT, "node_modules/.bin/wrangler"),
      ["dev", "--ip", HOST, "--port", String(port), "--inspector-port", String(inspectorPort),
        "--config", join(dir, "wrangler.toml"), "--persist-to", join(dir, "state")],
      { cwd: dir, detached: true, stdio: ["ignore", logFd, logFd], env },
    );
  } else if (runtime === "workerd") {
    writeFileSync(join(dir, "config.capnp"), await workerdConfig(dir, env, { name, vars, ledger, port }));
    t0 = performance.now();
    const args = ["serve", join(dir, "config.capnp")];
    if (inspect) args.push(`--inspector-addr=${HOST}:${inspectorPort}`);
    child = spawn(WORKERD, args, { cwd: dir, detached: true, stdio: ["ignore", logFd, logFd], env });
  } else {
    throw new Error(`BENCH_RUNTIME must be workerd or wrangler, not ${runtime}`);
  }
  closeSync(logFd);
  started.push(child);
  const logText = () => readFileSync(logFile, "utf8");
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
    throw new Error(`${name} did not start:\n${logText()}`);
  }
  const worker = { key, name, dir, child, url, inspectorPort, startupMs, logText, runtime };
  worker.workerdPid = await findWorkerd(child.pid);
  log(`${name} (${runtime}): first 200 on /health ${startupMs.toFixed(0)} ms after spawn; workerd pid ${worker.workerdPid}`);
  return worker;
}

// Bundles the worker in `dir` as `wrangler deploy` would (nothing is uploaded) and writes a
// workerd config serving it on `port`: vars as text bindings, outbound fetch allowed to
// loopback (the sink), the ledger's Durable Object in memory.
async function workerdConfig(dir, env, { name, vars, ledger, port }) {
  const out = join(dir, "out");
  await new Promise((resolve, reject) => {
    const build = spawn(
      join(ROOT, "node_modules/.bin/wrangler"),
      ["deploy", "--dry-run", "--outdir", out, "--config", join(dir, "wrangler.toml")],
      { cwd: dir, stdio: ["ignore", "pipe", "pipe"], env },
    );
    const chunks = [];
    build.stdout.on("data", (c) => chunks.push(c));
    build.stderr.on("data", (c) => chunks.push(c));
    build.once("exit", (code) =>
      code === 0 ? resolve() : reject(new Error(`bundling ${name} failed:\n${Buffer.concat(chunks)}`)),
    );
  });
  const files = readdirSync(out).filter((f) => /\.(m?js|wasm)$/.test(f));
  // The entry module first: wrangler names it after `main`.
  files.sort((x, y) => Number(/\.wasm$/.test(x)) - Number(/\.wasm$/.test(y)));
  const modules = files.map((f) =>
    f.endsWith(".wasm")
      ? `(name = ${JSON.stringify(f)}, wasm = embed ${JSON.stringify(`out/${f}`)})`
      : `(name = ${JSON.stringify(f)}, esModule = embed ${JSON.stringify(`out/${f}`)})`,
  );
  if (modules.filter((m) => m.includes("esModule")).length !== 1) {
    throw new Error(`expected one JavaScript module from wrangler for ${name}, got ${files.join(", ")}`);
  }
  const bindings = Object.entries(vars).map(([k, v]) => `(name = ${JSON.stringify(k)}, text = ${JSON.stringify(v)})`);
  const objects = [];
  if (ledger) {
    bindings.push('(name = "LEDGER", durableObjectNamespace = (className = "EventLedger"))');
    objects.push('(className = "EventLedger", uniqueKey = "stripe-edge-bench-ledger", enableSql = true)');
  }
  return [
    'using Workerd = import "/workerd/workerd.capnp";',
    "const config :Workerd.Config = (",
    "  services = [",
    "    (name = \"main\", worker = .worker),",
    "    (name = \"internet\", network = (allow = [\"private\", \"local\"])),",
    "  ],",
    `  sockets = [(name = "http", address = "${HOST}:${port}", http = (), service = "main")],`,
    ");",
    "const worker :Workerd.Worker = (",
    `  modules = [${modules.join(", ")}],`,
    `  compatibilityDate = ${JSON.stringify(compatibilityDate)},`,
    `  bindings = [${bindings.join(", ")}],`,
    `  durableObjectNamespaces = [${objects.join(", ")}],`,
    objects.length ? "  durableObjectStorage = (inMemory = void)," : "",
    '  globalOutbound = "internet",',
    ");",
  ].join("\n") + "\n";
}

export function procStat(pid) {
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
export function groupCpu(groupId) {
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
export function machineCpu() {
  const fields = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  const total = fields.reduce((s, x) => s + x, 0) / CLK_TCK;
  const idle = (fields[3] + fields[4]) / CLK_TCK;
  return { busy: total - idle, total };
}

export async function findWorkerd(groupId) {
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

export function sign(body) {
  const t = Math.floor(Date.now() / 1000);
  const v1 = createHmac("sha256", SECRET).update(`${t}.`).update(body).digest("hex");
  return `t=${t},v1=${v1}`;
}

// Sends `count` POSTs of `body` to `url` with `CONCURRENCY` in flight over keep-alive
// connections, stopping early after `secondsMax`. Returns latencies and statuses.
export async function drive(url, body, count, secondsMax) {
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
    latencies,
    requests: latencies.length,
    seconds,
    rps: latencies.length / seconds,
    p50_ms: at(0.5),
    p99_ms: at(0.99),
    statuses,
  };
}

