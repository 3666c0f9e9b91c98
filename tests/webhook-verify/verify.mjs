// Verifies webhook deliveries captured by mailroom's tests with the Standard Webhooks reference
// library (npm `standardwebhooks`), not with mailroom's own code.
//
// stdin: {"secret": "whsec_…", "requests": [{"headers": {"webhook-id": …, "webhook-timestamp": …,
// "webhook-signature": …}, "body": "<the exact body>"}]}
// Prints one line per request; exits 1 when any does not verify.
import { Webhook } from "standardwebhooks";

const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const input = JSON.parse(Buffer.concat(chunks).toString("utf8"));
const wh = new Webhook(input.secret);
let bad = 0;
for (const [i, r] of input.requests.entries()) {
  try {
    // jsonParse: false, so form bodies (not JSON) verify too.
    wh.verify(r.body, r.headers, { jsonParse: false });
    console.log(`ok ${i} ${r.headers["webhook-id"]}`);
  } catch (e) {
    bad++;
    console.log(`FAILED ${i} ${r.headers["webhook-id"]}: ${e.message}`);
  }
}
process.exit(bad ? 1 : 0);
