// Signs payloads with the official `stripe` npm package's test-header generator.
// Usage: node sign-node.mjs IN.json OUT.json, where IN.json is
// [{"payload": "...", "secret": "whsec_...", "timestamp": 1700000000}, ...]
// and OUT.json receives the matching list of Stripe-Signature header values.
import { readFileSync, writeFileSync } from "node:fs";
import Stripe from "stripe";

const [input, output] = process.argv.slice(2);
const cases = JSON.parse(readFileSync(input, "utf8"));
const headers = cases.map(({ payload, secret, timestamp }) =>
  Stripe.webhooks.generateTestHeaderString({ payload, secret, timestamp }),
);
writeFileSync(output, JSON.stringify(headers));
