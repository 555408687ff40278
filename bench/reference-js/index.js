// What a user would write instead of stripe-edge: verify with the official `stripe` package
// (constructEventAsync over Web Crypto, as Stripe documents for Workers), then forward the raw
// event to the origin. No normalization, no log line: the least a JavaScript Worker does.
import Stripe from "stripe";

const stripe = new Stripe("sk_test_bench_unused", {
  httpClient: Stripe.createFetchHttpClient(),
});
const cryptoProvider = Stripe.createSubtleCryptoProvider();

const json = (status, value) =>
  new Response(JSON.stringify(value), {
    status,
    headers: { "content-type": "application/json" },
  });

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/health") return json(200, { ok: true });
    if (url.pathname !== "/webhook" || request.method !== "POST") {
      return json(404, { error: "not_found" });
    }

    const body = await request.text();
    let event;
    try {
      event = await stripe.webhooks.constructEventAsync(
        body,
        request.headers.get("stripe-signature"),
        env.STRIPE_WEBHOOK_SECRET,
        undefined,
        cryptoProvider,
      );
    } catch (error) {
      return json(400, { error: "signature_verification_failed" });
    }

    const forwarded = await fetch(env.ORIGIN_URL, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "idempotency-key": event.id,
        "stripe-event-type": event.type,
      },
      body,
    });
    if (!forwarded.ok) return json(503, { error: "delivery_failed", id: event.id });
    return json(200, { received: true, id: event.id });
  },
};
