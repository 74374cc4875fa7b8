// The JavaScript example, route `js/[name]`: a `fetch`-event handler on the
// Web `Request`/`Response`/`URL` API, built by ComponentizeJS.
//
// - `GET /js/<name>`: `{"hello": name, "greeting": $GREETING, "route": ...}`,
//   the param read from the `wedge-params` header, the greeting from the
//   route's `[env]` (through `wasi:cli/environment`).
// - `POST /js/echo`: the request body back.
// - `GET /js/stream`: five lines, 100 ms apart, each sent as it is made.
// - `GET /js/fetch?url=U`: fetches `U` (the sidecar must allow it) and
//   answers `{"status": ..., "body": ...}`, or `502` with `{"error": ...}`.

import { getEnvironment } from "wasi:cli/environment@0.2.10";

addEventListener("fetch", (event) => event.respondWith(handle(event.request)));

async function handle(request) {
  const name = new URLSearchParams(request.headers.get("wedge-params") ?? "").get("name");
  const url = new URL(request.url);
  if (name === "echo" && request.method === "POST") {
    const type = request.headers.get("content-type") ?? "application/octet-stream";
    return new Response(await request.arrayBuffer(), { headers: { "content-type": type } });
  }
  if (name === "stream") {
    return new Response(lines(), { headers: { "content-type": "text/plain; charset=utf-8" } });
  }
  if (name === "fetch") {
    try {
      const upstream = await fetch(url.searchParams.get("url"));
      return Response.json({ status: upstream.status, body: await upstream.text() });
    } catch (error) {
      // A host that is not in allowed_outbound_hosts lands here too; the
      // host's log names the entry to add.
      return Response.json({ error: String(error) }, { status: 502 });
    }
  }
  const env = Object.fromEntries(getEnvironment());
  return Response.json({
    hello: name,
    greeting: env.GREETING ?? null,
    route: request.headers.get("wedge-route"),
  });
}

function lines() {
  const encoder = new TextEncoder();
  let n = 0;
  return new ReadableStream({
    async pull(controller) {
      if (n > 0) await new Promise((resolve) => setTimeout(resolve, 100));
      n += 1;
      controller.enqueue(encoder.encode(`line ${n}\n`));
      if (n === 5) controller.close();
    },
  });
}
