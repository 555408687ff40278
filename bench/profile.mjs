// A CPU profile of one worker under load, taken through the V8 inspector that `wrangler dev`
// opens (loopback only). Prints the functions with the most self time and writes the whole
// profile as a .cpuprofile (open it in Chrome DevTools). For readable wasm frames, profile a
// bundle that keeps the names section: `worker-build --release` without scripts/build.sh's
// strip step.
//
// Usage: node bench/profile.mjs PAYLOAD_DIR SIZE BUNDLE_DIR|ref OUT.cpuprofile [COUNT]
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import WebSocket from "ws";

import { ROOT, SECRET, drive, get, log, sleep, startSink, startWorker, stopAll } from "./harness.mjs";

const [payloadDir, size, target, outFile, countArg] = process.argv.slice(2);
const COUNT = Number(countArg ?? 1000);
const scripts = new Map();

function connect(url) {
  return new Promise((resolveWs, reject) => {
    const ws = new WebSocket(url);
    let id = 0;
    const pending = new Map();
    ws.on("message", (data) => {
      const msg = JSON.parse(data.toString());
      if (msg.method === "Debugger.scriptParsed") scripts.set(msg.params.scriptId, msg.params.url);
      if (msg.id && pending.has(msg.id)) {
        pending.get(msg.id)(msg);
        pending.delete(msg.id);
      }
    });
    ws.on("open", () =>
      resolveWs({
        send: (method, params = {}) =>
          new Promise((ok) => {
            id += 1;
            pending.set(id, ok);
            ws.send(JSON.stringify({ id, method, params }));
          }),
        close: () => ws.close(),
      }),
    );
    ws.on("error", reject);
  });
}

async function main() {
  const manifest = JSON.parse(readFileSync(join(payloadDir, "manifest.json"), "utf8"));
  const payload = manifest.payloads.find((p) => p.label === size);
  const body = readFileSync(join(payloadDir, payload.file));
  const sink = await startSink();
  const origin = `${sink.url}/stripe/events`;
  const spec =
    target === "ref"
      ? { name: "ref", main: join(ROOT, "bench/reference-js/index.js"),
          vars: { STRIPE_WEBHOOK_SECRET: SECRET, ORIGIN_URL: origin } }
      : { name: "stripe-edge", bundle: resolve(target),
          vars: { STRIPE_WEBHOOK_SECRET: SECRET, ORIGIN_URL: origin,
            ROUTES: JSON.stringify([{ name: "all", events: ["*"], to: ["origin"] }]) },
          // BENCH_LEDGER=1: with the LEDGER Durable Object, as the default wrangler.toml has.
          ledger: process.env.BENCH_LEDGER === "1" };
  const w = await startWorker({ key: "prof", ...spec, inspect: true });
  const targets = JSON.parse((await get(`http://127.0.0.1:${w.inspectorPort}/json`)).body);
  const wsUrl = targets.find((t) => t.webSocketDebuggerUrl)?.webSocketDebuggerUrl;
  log(`inspector targets: ${targets.map((t) => t.title ?? t.id).join(", ")}`);
  const session = await connect(wsUrl);
  await drive(w.url, body, Math.max(20, COUNT / 10), 20);
  await session.send("Profiler.enable");
  await session.send("Profiler.setSamplingInterval", { interval: 100 });
  await session.send("Profiler.start");
  const run = await drive(w.url, body, COUNT, 60);
  const { result } = await session.send("Profiler.stop");
  // Minified glue has anonymous functions: show a snippet of the source at each hot one.
  await session.send("Debugger.enable");
  const sources = new Map();
  for (const n of result.profile.nodes) {
    const id = n.callFrame.scriptId;
    if (id && id !== "0" && !sources.has(id) && !n.callFrame.url.includes("wasm")) {
      const r = await session.send("Debugger.getScriptSource", { scriptId: id });
      sources.set(id, r.result?.scriptSource ?? "");
    }
  }
  session.close();
  writeFileSync(outFile, JSON.stringify(result.profile));
  for (const [id, text] of sources) if (text) writeFileSync(`${outFile}.script-${id}.js`, text);
  log(`${run.requests} requests, ${run.rps.toFixed(1)} req/s, statuses ${JSON.stringify(run.statuses)}`);

  // Self time per function, from the sample counts.
  const { nodes, samples, timeDeltas } = result.profile;
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const self = new Map();
  let total = 0;
  samples.forEach((nodeId, i) => {
    const dt = timeDeltas[i] ?? 0;
    const frame = byId.get(nodeId).callFrame;
    let key = `${frame.functionName || "(anonymous)"} ${frame.url ? frame.url.split("/").pop() : ""}`;
    if (!frame.functionName && sources.get(frame.scriptId)) {
      const lines = sources.get(frame.scriptId).split("\n");
      const line = lines[frame.lineNumber] ?? "";
      key += `:${frame.lineNumber}:${frame.columnNumber} ${line.slice(frame.columnNumber, frame.columnNumber + 90)}`;
    }
    self.set(key, (self.get(key) ?? 0) + dt);
    total += dt;
  });
  const idle = self.get("(idle) ") ?? 0;
  console.log(`profile: ${(total / 1000).toFixed(0)} ms sampled, ${((total - idle) / 1000 / run.requests).toFixed(3)} ms non-idle per request`);
  for (const [key, us] of [...self].sort((x, y) => y[1] - x[1]).slice(0, 40)) {
    console.log(`${(us / 1000 / run.requests).toFixed(4).padStart(8)} ms/req ${((us / (total - idle)) * 100).toFixed(1).padStart(5)}%  ${key}`);
  }
  stopAll();
  await sleep(500);
  rmSync(w.dir, { recursive: true, force: true });
}

main().catch((error) => {
  console.error(error);
  stopAll();
  process.exit(1);
});
