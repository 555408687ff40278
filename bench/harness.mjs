// What the load benchmark (run.mjs) and the A/B comparison (compare.mjs) share: on loopback
// only, an origin sink, workers under `wrangler dev`, a load driver, and CPU accounting from
// /proc. Every process started here runs in its own process group and is ended by its id.
import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { cpSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
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

// Writes a wrangler.toml and .dev.vars for one worker in a temporary directory, starts
// `wrangler dev` there and waits for the first 200 on /health.
export async function startWorker({ key, name, main, bundle, vars, extraToml = "" }) {
  const dir = mkdtempSync(join(tmpdir(), `stripe-edge-bench-${key}-`));
  let mainPath = main;
  if (bundle) {
    // A private copy of a worker-build bundle (build/ for stripe-edge), so a rebuild during
    // the run cannot change it.
    cpSync(bundle, join(dir, "bundle"), { recursive: true });
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
  const worker = { key, name, dir, child, url, inspectorPort, startupMs, logChunks, logFile };
  worker.workerdPid = await findWorkerd(child.pid);
  log(`${name}: first 200 on /health ${startupMs.toFixed(0)} ms after spawn; workerd pid ${worker.workerdPid}`);
  return worker;
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

