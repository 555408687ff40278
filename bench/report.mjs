// Turns one benchmark run (bench/out/*.json) into BENCHMARKS.md and bench/throughput.svg, and
// prints the summary table. Every number comes from the run; the verdict on each goal of
// issue 5 is computed here. bench/notes.md (hand-written analysis) is appended verbatim.
// Usage: node bench/report.mjs OUT_DIR
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";

const ROOT = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
const outDir = process.argv[2] ?? join(ROOT, "bench/out");
const load = JSON.parse(readFileSync(join(outDir, "load.json"), "utf8"));
const native = JSON.parse(readFileSync(join(outDir, "native.json"), "utf8"));
const meta = JSON.parse(readFileSync(join(outDir, "meta.json"), "utf8"));
// Runs before bench/wasm-core existed have no in-wasm figures.
const wasmCore = existsSync(join(outDir, "wasm.json"))
  ? JSON.parse(readFileSync(join(outDir, "wasm.json"), "utf8"))
  : null;
// Bodies at least this large are hashed by Web Crypto in the product (src/shell/request.rs).
const WEB_CRYPTO_MIN_BYTES =
  Number(
    readFileSync(join(ROOT, "src/shell/request.rs"), "utf8").match(
      /WEB_CRYPTO_MIN_BYTES: usize = (\d+) \* 1024/,
    )?.[1],
  ) * 1024;

const SIZES = ["1KiB", "10KiB", "100KiB", "1MiB"];
const NAMES = { a: "stripe-edge", b: "reference JS (stripe npm)", c: "empty worker" };
const GZIP_BUDGET_BYTES = 300 * 1000;
const CPU_LIMIT_MS = 10;

// Runs before the workerd harness recorded no runtime: they were under `wrangler dev`.
const RUNTIME = load.runtime ?? "wrangler";
const UNDER_WRANGLER = RUNTIME === "wrangler";

const row = (key, size) => load.results.find((r) => r.worker === key && r.size === size);
const f = (x, digits = 1) => (Number.isFinite(x) ? x.toFixed(digits) : "n/a");
const ratio = (x, y) => x / y;

// Bundle size.
const wasm = readFileSync(join(ROOT, "build/index_bg.wasm"));
const wasmRaw = wasm.length;
const wasmGzip = gzipSync(wasm, { level: 9 }).length;
const js = readFileSync(join(ROOT, "build/index.js"));

// Machine.
const cpuModel =
  readFileSync("/proc/cpuinfo", "utf8").match(/^model name\s*:\s*(.*)$/m)?.[1] ?? cpus()[0]?.model;
const sh = (cmd, args) => {
  try {
    return execFileSync(cmd, args, { cwd: ROOT, encoding: "utf8" }).trim();
  } catch {
    return "n/a";
  }
};
const nproc = sh("nproc", []);
// The commit the run measured (recorded by scripts/bench.sh), not the one checked out now.
const commit = meta.commit ?? sh("git", ["rev-parse", "--short", "HEAD"]);
const dirty = sh("git", ["status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"]);

// Load results table.
const lines = [];
const push = (s = "") => lines.push(s);
const tableRows = [];
for (const size of SIZES) {
  const [a, b, c] = ["a", "b", "c"].map((k) => row(k, size));
  if (!a || !b || !c) continue;
  tableRows.push({ size, a, b, c, ab: ratio(a.rps, b.rps), ac: ratio(a.rps, c.rps) });
}

// Native CPU table.
const nat = Object.fromEntries(native.sizes.map((s) => [s.label, s]));
// In-wasm CPU per event (µs), and the path the product takes at each size: the core's own
// HMAC below the Web Crypto threshold, Web Crypto's HMAC plus the core given the tag above.
const inWasm = Object.fromEntries((wasmCore?.sizes ?? []).map((s) => [s.label, s]));
const shippedUs = (size) => {
  const w = inWasm[size];
  if (!w) return NaN;
  return w.bytes >= WEB_CRYPTO_MIN_BYTES
    ? w.webcrypto_us.median + w.decide_tags_us.median
    : w.decide_us.median;
};

// Goals.
const get = (size) => tableRows.find((r) => r.size === size);
const goals = [];
{
  const r1 = get("1KiB"), r10 = get("10KiB");
  const ok = r1 && r10 && r1.ab >= 1.5 && r10.ab >= 1.5;
  goals.push([
    "a/b ≥ 1.5× throughput at 1 KiB and 10 KiB",
    ok,
    `a/b = ${f(r1?.ab, 2)} at 1 KiB, ${f(r10?.ab, 2)} at 10 KiB`,
  ]);
  const worst = tableRows.reduce((m, r) => (r.ab < m.ab ? r : m), tableRows[0]);
  goals.push([
    "a/b never below 1.0 at any size",
    tableRows.every((r) => r.ab >= 1.0),
    `lowest a/b = ${f(worst?.ab, 2)} at ${worst?.size}`,
  ]);
  const worse = tableRows.filter((r) => r.a.p99_ms > r.b.p99_ms);
  goals.push([
    "p99 no worse than b's",
    worse.length === 0,
    worse.length
      ? `a's p99 is higher at ${worse.map((r) => `${r.size} (${f(r.a.p99_ms)} vs ${f(r.b.p99_ms)} ms)`).join(", ")}`
      : "a's p99 ≤ b's at every size",
  ]);
  goals.push([
    "a ≥ 80 % of c at 1 KiB",
    r1 && r1.ac >= 0.8,
    `a/c = ${f(r1 ? r1.ac * 100 : NaN, 0)} % at 1 KiB`,
  ]);
  const a1m = row("a", "1MiB"), c1m = row("c", "1MiB");
  const marginal = a1m && c1m ? a1m.workerd_cpu_ms_per_request - c1m.workerd_cpu_ms_per_request : NaN;
  const nativeMs = nat["1MiB"] ? nat["1MiB"].decide_us.p50 / 1000 : NaN;
  const wasmMs = shippedUs("1MiB") / 1000;
  goals.push([
    "a 1 MiB event verified and normalized in under 10 ms of CPU",
    (Number.isFinite(wasmMs) ? wasmMs : marginal) < CPU_LIMIT_MS && marginal < CPU_LIMIT_MS,
    (Number.isFinite(wasmMs) ? `inside wasm under workerd: ${f(wasmMs, 2)} ms (Web Crypto HMAC and the core); ` : "") +
      `the whole request: ${f(marginal)} ms of workerd CPU above the empty worker; natively the core alone takes ${f(nativeMs, 2)} ms`,
  ]);
  goals.push([
    "gzipped wasm under 300 KB",
    wasmGzip < GZIP_BUDGET_BYTES,
    `${wasmGzip.toLocaleString("en")} bytes gzipped (${f(wasmGzip / 1024)} KiB)`,
  ]);
}

// The chart: grouped bars of requests/s per payload size.
function svgChart() {
  const W = 720, H = 380, left = 64, right = 16, top = 48, bottom = 64;
  const colors = { a: "#f6821f", b: "#635bff", c: "#9aa0a6" };
  const max = Math.max(...tableRows.flatMap((r) => [r.a.rps, r.b.rps, r.c.rps]));
  const step = niceStep(max / 5);
  const yMax = Math.ceil(max / step) * step;
  const plotW = W - left - right, plotH = H - top - bottom;
  const y = (v) => top + plotH - (v / yMax) * plotH;
  const groupW = plotW / tableRows.length;
  const barW = Math.min(48, (groupW - 24) / 3);
  const out = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="#fff"/>`);
  out.push(`<text x="${W / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">Throughput by payload size (requests/s, concurrency ${load.concurrency}, local workerd)</text>`);
  for (let v = 0; v <= yMax + 1e-9; v += step) {
    out.push(`<line x1="${left}" x2="${W - right}" y1="${y(v)}" y2="${y(v)}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end">${Math.round(v)}</text>`);
  }
  tableRows.forEach((r, i) => {
    const x0 = left + i * groupW + (groupW - 3 * barW - 8) / 2;
    ["a", "b", "c"].forEach((k, j) => {
      const v = r[k].rps;
      const x = x0 + j * (barW + 4);
      out.push(`<rect x="${x.toFixed(1)}" y="${y(v).toFixed(1)}" width="${barW.toFixed(1)}" height="${(top + plotH - y(v)).toFixed(1)}" fill="${colors[k]}"/>`);
      out.push(`<text x="${(x + barW / 2).toFixed(1)}" y="${(y(v) - 4).toFixed(1)}" text-anchor="middle" font-size="10">${Math.round(v)}</text>`);
    });
    out.push(`<text x="${(left + i * groupW + groupW / 2).toFixed(1)}" y="${top + plotH + 18}" text-anchor="middle">${r.size}</text>`);
  });
  out.push(`<line x1="${left}" x2="${left}" y1="${top}" y2="${top + plotH}" stroke="#333"/>`);
  out.push(`<line x1="${left}" x2="${W - right}" y1="${top + plotH}" y2="${top + plotH}" stroke="#333"/>`);
  ["a", "b", "c"].forEach((k, j) => {
    const x = left + j * 220;
    out.push(`<rect x="${x}" y="${H - 24}" width="12" height="12" fill="${colors[k]}"/>`);
    out.push(`<text x="${x + 18}" y="${H - 14}">(${k}) ${NAMES[k]}</text>`);
  });
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}
function niceStep(raw) {
  const p = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw);
}
writeFileSync(join(ROOT, "bench/throughput.svg"), svgChart());

// BENCHMARKS.md
push("# Benchmarks");
push();
push("Generated by `scripts/bench.sh` (issue 5); every number below is from the run described here.");
push("Re-run it to replace this file; the analysis at the end comes from `bench/notes.md`.");
push();
push("## Machine and run");
push();
push("| | |");
push("| --- | --- |");
push(`| CPU | ${cpuModel}, \`nproc\` = ${nproc} |`);
push(`| OS | Linux ${sh("uname", ["-r"])} |`);
push(
  UNDER_WRANGLER
    ? `| runtime | \`wrangler dev\` ${meta.wrangler_version} (${meta.workerd_version}), local mode, all on 127.0.0.1 |`
    : `| runtime | workerd ${meta.workerd_version} (the binary wrangler ${meta.wrangler_version} ships), one process per worker, bundles from \`wrangler deploy --dry-run\`, all on 127.0.0.1 |`,
);
push(`| Node.js (driver, sink) | ${process.version} |`);
push(`| stripe-edge | commit ${commit}${dirty && dirty !== "n/a" ? ", built from a working tree with uncommitted changes in src/ or Cargo files" : ""} |`);
push(`| date | ${meta.date} |`);
push(`| command | \`${load.scale && load.scale !== 1 ? `BENCH_SCALE=${load.scale} ` : ""}scripts/bench.sh\` (took ${f(meta.seconds, 0)} s) |`);
push(`| load | concurrency ${load.concurrency}; requests per worker and size: ${Object.entries(load.counts).map(([k, v]) => `${k} ${v}`).join(", ")}; ${load.rounds ? `split into ${load.rounds} rounds per worker, the three workers' rounds alternating (order rotating) so other load on the machine falls on all alike; ` : ""}each worker and size stops after ${load.run_seconds_max} s; a 10 % warm-up first |`);
push(`| load average at start | ${meta.loadavg_start} |`);
push();
push("(a) is the real `build/` bundle with `ROUTES` sending `*` to `origin` only (KV is not in the");
push("path) and **without the `LEDGER` Durable Object binding**: every arrival is delivered, with no");
push("dedupe, so the two Durable Object round trips (claim, then settle) that a worker deployed with");
push("the default `wrangler.toml` makes per delivery are not in these numbers; `bench/notes.md` has a");
push("side-by-side run with the ledger. (b) is `bench/reference-js/` (`stripe.webhooks.constructEventAsync` with");
push("`Stripe.createSubtleCryptoProvider()`, then the raw body forwarded); (c) is `bench/empty/`");
push("(reads the body and answers 200). (a) and (b) POST every event to the same loopback");
{
  // Whether every measured request was answered 200 and, for (a) and (b), reached the sink.
  const odd = load.results.filter(
    (r) => Object.keys(r.statuses).some((s) => s !== "200") ||
      (r.worker !== "c" && r.origin_received !== r.requests),
  );
  push(
    "sink (`bench/sink.mjs`); " +
      (odd.length === 0
        ? "every measured request was answered 200 and reached the sink."
        : `every measured request was answered 200 and reached the sink except: ${odd
            .map((r) => `${r.size} (${r.worker}) statuses ${JSON.stringify(r.statuses)}, sink got ${r.origin_received}`)
            .join("; ")}.`),
  );
}
if (UNDER_WRANGLER) {
  push("All three run under `wrangler dev`, which attaches its inspector to the worker's isolate with");
  push("the Runtime and Network domains enabled, so every `console.log` and every subrequest also");
  push("becomes an inspector event; that is dev-only cost, and it weighs on (a), which logs one line");
  push("per request, more than on (b), which logs nothing.");
} else {
  push("Each worker is bundled exactly as `wrangler deploy` would upload it (`wrangler deploy --dry-run");
  push("--outdir`) and served by the `workerd` binary that wrangler ships, one process per worker, with");
  push("a generated config (vars as text bindings, outbound fetch allowed to loopback) and nothing else:");
  push("no `wrangler dev` middleware, no inspector, no Node process beside it. That is the closest this");
  push("machine gets to the runtime on Cloudflare (`BENCH_RUNTIME=wrangler scripts/bench.sh` measures");
  push("under `wrangler dev` instead). (a) logs its one line per request to workerd's stdout; (b) logs");
  push("nothing.");
}
push("Events are `fixtures/events` compact JSON grown to the exact size (`bench/payloads.mjs`):");
push("`transfer.created` for 1 KiB, `invoice.paid` with repeated line items for the rest.");
push();
push("## Load: throughput and latency");
push();
push("![throughput by payload size](bench/throughput.svg)");
push();
push(`| size | worker | requests | req/s | p50 ms | p99 ms | workerd CPU ms/req |${UNDER_WRANGLER ? " wrangler Node CPU ms/req |" : ""} other load on the box |`);
push(`| --- | --- | ---: | ---: | ---: | ---: | ---: |${UNDER_WRANGLER ? " ---: |" : ""} ---: |`);
for (const r of tableRows) {
  for (const k of ["a", "b", "c"]) {
    const x = r[k];
    const node = UNDER_WRANGLER ? ` ${f(x.wrangler_node_cpu_ms_per_request, 2)} |` : "";
    push(`| ${r.size} | (${k}) ${NAMES[k]} | ${x.requests} in ${f(x.seconds)} s | ${f(x.rps)} | ${f(x.p50_ms)} | ${f(x.p99_ms)} | ${f(x.workerd_cpu_ms_per_request, 2)} |${node} ${f(x.foreign_cpu_share * 100, 0)} % |`);
  }
}
push();
push("| size | a/b throughput | a/c throughput | a p99 / b p99 | a − c workerd CPU ms/req | b − c workerd CPU ms/req |");
push("| --- | ---: | ---: | ---: | ---: | ---: |");
for (const r of tableRows) {
  push(`| ${r.size} | ${f(r.ab, 2)} | ${f(r.ac, 2)} | ${f(r.a.p99_ms / r.b.p99_ms, 2)} | ${f(r.a.workerd_cpu_ms_per_request - r.c.workerd_cpu_ms_per_request, 2)} | ${f(r.b.workerd_cpu_ms_per_request - r.c.workerd_cpu_ms_per_request, 2)} |`);
}
push();
push("\"workerd CPU\" is the user + system CPU time of that worker's `workerd` process (from");
push("`/proc/<pid>/stat`) over the measured run, divided by the requests: the runtime's whole cost");
push("per request, including HTTP parsing, the copy of the body into the isolate and the");
push("subrequest to the sink." + (UNDER_WRANGLER ? " \"wrangler Node CPU\" is the same for wrangler's own" : ""));
if (UNDER_WRANGLER) push("Node processes, which local mode puts beside workerd.");
push("The driver and the sink share the same two cores. \"Other load\" is the share of the");
push("machine's CPU spent by processes outside the benchmark during that run (other jobs on the");
push("box); where it is high, throughput is understated for all three workers alike.");
push();
push("## CPU per event: verify, parse, normalize");
push();
push(`Natively (\`bench/native\`, ${native.profile}; ${native.target}), one event at a time, in µs (p50 of many runs):`);
push();
push("| size | HMAC-SHA256 over `t.body` (floor) | `verify` | `verify` + `parse` | `pipeline::decide` (verify, parse, route, normalize, serialize) | decide / floor |");
push("| --- | ---: | ---: | ---: | ---: | ---: |");
for (const size of SIZES) {
  const s = nat[size];
  if (!s) continue;
  push(`| ${size} | ${f(s.hmac_sha256_us.p50)} | ${f(s.verify_us.p50)} | ${f(s.verify_parse_us.p50)} | ${f(s.decide_us.p50)} | ${f(s.decide_us.p50 / s.hmac_sha256_us.p50, 2)} |`);
}
push();
if (wasmCore) {
  push(`Inside wasm, under workerd (\`bench/wasm-core\`: the same core linked into a worker of its own, run n times per request; the workerd process's CPU for n runs less that for none, over n), in µs per event (median of ${wasmCore.sizes[0]?.decide_us.samples.length ?? 0}):`);
  push();
  push("| size | HMAC-SHA256 in wasm (`hmac`/`sha2`) | HMAC-SHA256 by Web Crypto | `verify` | `verify` + `parse` | `decide` (own HMAC) | `decide` given the tag | as shipped | native `decide` |");
  push("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
  for (const size of SIZES) {
    const w = inWasm[size];
    if (!w) continue;
    push(`| ${size} | ${f(w.hmac_us.median)} | ${f(w.webcrypto_us.median)} | ${f(w.verify_us.median)} | ${f(w.parse_us.median)} | ${f(w.decide_us.median)} | ${f(w.decide_tags_us.median)} | **${f(shippedUs(size))}** | ${f(nat[size]?.decide_us.p50)} |`);
  }
  push();
  push(`"As shipped" is the path the worker takes: below ${WEB_CRYPTO_MIN_BYTES / 1024} KiB the core hashes the body itself (\`decide\`);`);
  push("from there on Web Crypto hashes it and the core checks the tag (Web Crypto + `decide` given the tag).");
  push("`decide` is verify, parse, route, normalize and serialize the normalized event and its origin headers.");
  push();
}
push("The whole request in the runtime: the \"a − c workerd CPU\" column above, the CPU workerd spends on");
push("a stripe-edge request beyond what it spends on the empty worker's: it also holds reading the");
push("request, the subrequest to the sink, the log line and the copies between JavaScript and wasm.");
push("Not usable for CPU: the worker's own `duration_ms` log field, which is wall time (in workerd the");
push(`clock does not advance while code runs; this run: mean ${f(load.stripe_edge_duration_ms_log.mean)} ms, max ${load.stripe_edge_duration_ms_log.max} ms, queueing included),`);
push("and Node, whose V8 (20) cannot compile `index_bg.wasm` (it uses the wasm exception-handling");
push("`try_table` opcode); hence a worker of its own under workerd for the table above.");
push();
push("## Bundle and start-up");
push();
push("| | |");
push("| --- | --- |");
push(`| \`build/index_bg.wasm\` raw | ${wasmRaw.toLocaleString("en")} bytes (${f(wasmRaw / 1024)} KiB) |`);
push(`| \`build/index_bg.wasm\` gzipped (level 9) | ${wasmGzip.toLocaleString("en")} bytes (${f(wasmGzip / 1024)} KiB); budget in this issue 300 KB; free-plan limit 3 MiB |`);
push(`| \`build/index.js\` (glue) raw / gzipped | ${js.length.toLocaleString("en")} / ${gzipSync(js, { level: 9 }).length.toLocaleString("en")} bytes |`);
push(`| start-up, ${UNDER_WRANGLER ? "`wrangler dev`" : "`workerd serve`"} spawn → first 200 on \`/health\` | (a) ${f(load.startup_ms.a, 0)} ms, (b) ${f(load.startup_ms.b, 0)} ms, (c) ${f(load.startup_ms.c, 0)} ms |`);
push(`| wasm compile alone (\`new WebAssembly.Module\`, Node ${process.version}) | ${meta.wasm_compile_ms === null ? "not possible: see above" : `${f(meta.wasm_compile_ms, 1)} ms`} |`);
push();
if (UNDER_WRANGLER) {
  push("The start-up figure is wrangler's whole local start (its Node CLI, bundling with esbuild,");
  push("starting workerd, then the worker's first request), not the isolate's cold start on");
  push("Cloudflare; the difference between (a) and (c) is the part that belongs to the worker.");
} else {
  push("The start-up figure is workerd's start with the bundle (compiling the wasm module, running the");
  push("top level of the glue and instantiating it) up to the answer to the first request; the");
  push("difference between (a) and (c) is the part that belongs to the worker.");
}
push();
push("## Goals of issue 5");
push();
push("| goal | met? | measured |");
push("| --- | --- | --- |");
for (const [goal, ok, detail] of goals) push(`| ${goal} | ${ok ? "**met**" : "**not met**"} | ${detail} |`);
push();
if (goals.some(([, ok]) => !ok)) {
  push("What limits each goal that is not met, with the profile evidence, is in the next section.");
  push();
}
const notes = join(ROOT, "bench/notes.md");
if (existsSync(notes)) {
  push(readFileSync(notes, "utf8").trim());
  push();
}
writeFileSync(join(ROOT, "BENCHMARKS.md"), lines.join("\n"));

// Console summary.
console.log(`\nsize     worker                      req/s    p50 ms    p99 ms  workerd CPU ms/req`);
for (const r of tableRows) {
  for (const k of ["a", "b", "c"]) {
    const x = r[k];
    console.log(
      `${r.size.padEnd(8)} (${k}) ${NAMES[k].padEnd(24)} ${f(x.rps).padStart(8)} ${f(x.p50_ms).padStart(9)} ${f(x.p99_ms).padStart(9)} ${f(x.workerd_cpu_ms_per_request, 2).padStart(10)}`,
    );
  }
  console.log(`${"".padEnd(8)} a/b = ${f(r.ab, 2)}   a/c = ${f(r.ac, 2)}`);
}
console.log(`\nwasm: ${wasmRaw} bytes raw, ${wasmGzip} bytes gzipped`);
console.log(`start-up (spawn → first 200 on /health): a ${f(load.startup_ms.a, 0)} ms, b ${f(load.startup_ms.b, 0)} ms, c ${f(load.startup_ms.c, 0)} ms`);
for (const [goal, ok, detail] of goals) console.log(`${ok ? "MET    " : "NOT MET"}  ${goal}: ${detail}`);
console.log(`\nwrote BENCHMARKS.md and bench/throughput.svg (load average at start ${meta.loadavg_start}; now ${loadavg().map((x) => x.toFixed(2)).join(" ")})`);
