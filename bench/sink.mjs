// The origin every worker forwards to: a loopback HTTP server that reads each body whole and
// answers 200. It counts requests and bytes so the run can check every event arrived.
// Usage: node bench/sink.mjs  (prints {"port":N} once listening; GET /stats for the counts)
import http from "node:http";

let requests = 0;
let bytes = 0;
const server = http.createServer((req, res) => {
  if (req.method === "GET" && req.url === "/stats") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ requests, bytes }));
    return;
  }
  req.on("data", (chunk) => (bytes += chunk.length));
  req.on("end", () => {
    requests += 1;
    res.writeHead(200, { "content-type": "text/plain", "content-length": "2" });
    res.end("ok");
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, "127.0.0.1", () => {
  console.log(JSON.stringify({ port: server.address().port }));
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
