"""Signs payloads with the official `stripe` PyPI package.

Usage: python3 sign_python.py IN.json OUT.json, with the same files as sign-node.mjs.
"""

import json
import sys

import stripe

with open(sys.argv[1], encoding="utf-8") as source:
    cases = json.load(source)
headers = [
    stripe.WebhookSignature.generate_signature_header(
        case["payload"], case["secret"], timestamp=case["timestamp"]
    )
    for case in cases
]
with open(sys.argv[2], "w", encoding="utf-8") as target:
    json.dump(headers, target)
