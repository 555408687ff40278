// Runtime calls the worker makes on every delivery, each done here in one call from Wasm.
// Through the generated bindings, the same work took a call per header, a RequestInit
// object built field by field, an AbortController and a timer closure; in a CPU profile of
// a 1 KiB webhook those crossings and objects cost more than the Rust code itself
// (bench/notes.md). Linked into the bundle by wasm-bindgen (src/shell/runtime.rs).

// Header lists arrive as one string, "name\nvalue\nname\nvalue": the Rust side refuses
// names and values holding a line break, which no valid header has.
function headerPairs(lines) {
  const parts = lines === "" ? [] : lines.split("\n");
  const pairs = [];
  for (let i = 0; i + 1 < parts.length; i += 2) pairs.push([parts[i], parts[i + 1]]);
  return pairs;
}

// Every function here returns a promise and never throws: an exception thrown into Wasm
// would unwind through the Rust futures of every request in flight on the isolate.

// POSTs `body` to `url`, never following a redirect, and gives up after `timeoutMs`.
// Resolves to [status, Retry-After or null]; rejects with "timeout", "network" or
// "bad_request" (headers or URL the runtime refuses). `body` is a view of Wasm memory,
// so it is copied before anything asynchronous happens.
export function postOrigin(url, headerLines, body, timeoutMs) {
  let init;
  try {
    init = {
      method: "POST",
      headers: new Headers(headerPairs(headerLines)),
      body: body.slice(),
      redirect: "manual",
      signal: AbortSignal.timeout(timeoutMs),
    };
  } catch {
    return Promise.reject("bad_request");
  }
  let sent;
  try {
    sent = fetch(url, init);
  } catch {
    return Promise.reject("network");
  }
  return sent.then(
    (response) => {
      // Only the status and Retry-After matter; an unread body would hold the connection
      // open until garbage collection, against the runtime's limit on open connections.
      if (response.body) response.body.cancel().catch(() => {});
      return [response.status, response.headers.get("retry-after")];
    },
    (error) => {
      throw error && error.name === "TimeoutError" ? "timeout" : "network";
    },
  );
}

// The worker's answer: `body` (JSON text) with `status` and the headers in `headerLines`.
export function respond(status, body, headerLines) {
  return new Response(body, { status, headers: headerPairs(headerLines) });
}

// One request to the Durable Object named `name` in `namespace`: `body` is a string, a
// Uint8Array (a view of Wasm memory, copied here) or null, `job` a header value or "".
// Resolves to [status, body text]. Through the generated bindings the same call built a
// Request field by field and read the answer chunk by chunk from its stream.
export function callObject(namespace, name, method, url, body, job) {
  try {
    const init = { method };
    if (body !== null && body !== undefined) init.body = typeof body === "string" ? body : body.slice();
    if (job !== "") init.headers = { "stripe-edge-job": job };
    const stub = namespace.get(namespace.idFromName(name));
    return stub.fetch(url, init).then((response) => response.text().then((text) => [response.status, text]));
  } catch (error) {
    return Promise.reject(error);
  }
}
