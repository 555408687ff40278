// The worker's entry module (wrangler.toml `main`; scripts/build.sh copies it next to
// worker-build's output as build/worker/entry.mjs).
//
// worker-build's default export is a WorkerEntrypoint subclass wrapped in a Proxy: workerd
// constructs it for every request, and every method read goes through a second Proxy that
// checks for a crashed Wasm instance. A CPU profile of a 1 KiB webhook put that machinery
// among the largest JavaScript costs per request (bench/notes.md). The handlers themselves
// only pass the request, env and ctx on to the Wasm export, so this module exports a plain
// handler object that calls them directly. Recovery after a Rust panic does not depend on
// the Proxy: the generated glue checks, before every call into Wasm, whether the instance
// aborted and instantiates a fresh one if so.
//
// The Durable Object classes keep worker-build's Proxies: each holds a pointer into Wasm
// memory and must be rebuilt when the instance is.
import Generated, { DeliveryJournal, EventLedger } from "../index.js";

const { fetch: onFetch, queue: onQueue } = Generated.prototype;

if (typeof onFetch !== "function" || typeof onQueue !== "function") {
  throw new Error("stripe-edge entry: the generated worker has no fetch or queue handler");
}

export { DeliveryJournal, EventLedger };

export default {
  fetch(request, env, ctx) {
    return onFetch.call({ env, ctx }, request);
  },
  queue(batch, env, ctx) {
    return onQueue.call({ env, ctx }, batch);
  },
};
