// The worker's entry module (wrangler.toml `main`; scripts/build.sh copies it next to
// worker-build's output as build/worker/entry.mjs).
//
// worker-build's default export is a WorkerEntrypoint subclass wrapped in a Proxy: workerd
// constructs it for every request, and every method read goes through a second Proxy that
// checks for a crashed Wasm instance. A CPU profile of a 1 KiB webhook put that machinery
// among the largest JavaScript costs per request (bench/notes.md). The handlers themselves
// only pass the request, env and ctx on to the Wasm export, so this module exports a plain
// handler object that calls them directly.
//
// After a Rust panic the instance must be replaced exactly once, before the next request
// starts: the panic hook sets `criticalError` in the shared init state, and worker-build's
// Proxies replace the instance when they see it. Called directly, the glue would start a
// fresh instance on its own and a Durable Object wrapper would then replace it again in the
// middle of the request, stranding it (it hung until the runtime cancelled it). So the
// first request after a panic goes through worker-build's class, whose constructor does the
// one reset; every other request takes the direct path.
//
// The Durable Object classes keep worker-build's Proxies: each holds a pointer into Wasm
// memory and must be rebuilt when the instance is.
import Generated, { DeliveryJournal, EventLedger } from "../index.js";

const { fetch: onFetch, queue: onQueue } = Generated.prototype;
// The state object the panic hook and worker-build's Proxies share (worker's init.rs).
const initState = globalThis.__worker_init_state;

if (typeof onFetch !== "function" || typeof onQueue !== "function" || typeof initState !== "object") {
  throw new Error("stripe-edge entry: the generated worker is not the shape this entry expects");
}

export { DeliveryJournal, EventLedger };

export default {
  fetch(request, env, ctx) {
    if (initState.criticalError) return new Generated(ctx, env).fetch(request);
    return onFetch.call({ env, ctx }, request);
  },
  queue(batch, env, ctx) {
    if (initState.criticalError) return new Generated(ctx, env).queue(batch);
    return onQueue.call({ env, ctx }, batch);
  },
};
