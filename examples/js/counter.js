// The JavaScript key-value example, route `js/counter`: a counter kept in
// the route's store "default" through the standard `wasi:keyvalue`
// interfaces, built by ComponentizeJS against `wedge:handler/stateful-handler`.
// Its sidecar grants the store (`key_value_stores = ["default"]`).
//
// - `GET /js/counter`: adds 1 to the key `js-counter` and answers
//   `{"count": N}`, the new value (1 the first time). Every request runs in
//   a fresh instance: the count lasts because the host keeps it.
// - A store error (the sidecar does not grant the store, say): `503` with
//   `{"error": ...}`, e.g. `store "default": access-denied`.

import { open } from "wasi:keyvalue/store@0.2.0-draft2";
import { increment } from "wasi:keyvalue/atomics@0.2.0-draft2";

const STORE = "default";
const KEY = "js-counter";

addEventListener("fetch", (event) => event.respondWith(handle()));

function handle() {
  let count;
  try {
    const bucket = open(STORE);
    // s64 is a BigInt on both sides of the boundary.
    count = increment(bucket, KEY, 1n);
  } catch (error) {
    return Response.json({ error: `store "${STORE}": ${describe(error)}` }, { status: 503 });
  }
  return Response.json({ count: Number(count) });
}

// The store's `error` variant, which the bindings throw as the payload of
// a `ComponentError`, as text: `no-such-store`, `access-denied`, or
// `other: <the host's message>`.
function describe(error) {
  const variant = error?.payload ?? error;
  switch (variant?.tag) {
    case "no-such-store":
    case "access-denied":
      return variant.tag;
    case "other":
      return `other: ${variant.val}`;
    default:
      return String(error);
  }
}
