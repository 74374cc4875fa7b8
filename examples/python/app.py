"""The Python example, route `py/[name]`: the JavaScript example's API,
built by componentize-py against `wasi:http` itself (no framework; its
bindings are generated at build time from `wit/`).

- `GET /py/<name>`: `{"hello": name, "greeting": $GREETING, "route": ...}`,
  the param read from the `wedge-params` header, the greeting from the
  route's `[env]`.
- `POST /py/echo`: the request body back.
- `GET /py/stream`: five lines, 100 ms apart, each written as it is made.
- `GET /py/fetch?url=U`: fetches `U` (the sidecar must allow it) and
  answers `{"status": ..., "body": ...}`, or `502` with `{"error": ...}`.
"""

import json
import os
import time
from urllib.parse import parse_qs, urlsplit

from wit_world import exports
from wit_world.imports import outgoing_handler
from wit_world.imports.types import (
    Fields,
    IncomingBody,
    IncomingRequest,
    Method_Post,
    OutgoingBody,
    OutgoingRequest,
    OutgoingResponse,
    ResponseOutparam,
    Scheme_Http,
    Scheme_Https,
)
from componentize_py_types import Err, Ok

# `blocking-write-and-flush` takes at most 4096 bytes a call.
WRITE_MAX = 4096


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        with request.headers() as fields:
            headers = {name: value.decode() for name, value in fields.entries()}
        name = parse_qs(headers.get("wedge-params", "")).get("name", [""])[0]
        query = parse_qs(urlsplit(request.path_with_query() or "/").query)
        if name == "echo" and isinstance(request.method(), Method_Post):
            body = read_all(request.consume())
            kind = headers.get("content-type", "application/octet-stream")
            respond(response_out, 200, kind, [body])
        elif name == "stream":
            respond(response_out, 200, "text/plain; charset=utf-8", lines())
        elif name == "fetch":
            try:
                status, body = fetch(query["url"][0])
            except RuntimeError as error:
                # A host not in allowed_outbound_hosts lands here too; the
                # host's log names the entry to add.
                answer = json.dumps({"error": str(error)}).encode()
                respond(response_out, 502, "application/json", [answer])
                return
            answer = {"status": status, "body": body.decode(errors="replace")}
            respond(response_out, 200, "application/json", [json.dumps(answer).encode()])
        else:
            answer = {
                "hello": name,
                "greeting": os.environ.get("GREETING"),
                "route": headers.get("wedge-route"),
            }
            respond(response_out, 200, "application/json", [json.dumps(answer).encode()])


def lines():
    for n in range(1, 6):
        if n > 1:
            time.sleep(0.1)
        yield f"line {n}\n".encode()


def respond(response_out, status, content_type, chunks) -> None:
    """Sends the head at once, then each chunk as it is produced."""
    response = OutgoingResponse(Fields.from_list([("content-type", content_type.encode())]))
    response.set_status_code(status)
    body = response.body()
    ResponseOutparam.set(response_out, Ok(response))
    with body.write() as stream:
        for chunk in chunks:
            for start in range(0, len(chunk), WRITE_MAX):
                stream.blocking_write_and_flush(chunk[start : start + WRITE_MAX])
    OutgoingBody.finish(body, None)


def read_all(body: IncomingBody) -> bytes:
    chunks = []
    with body.stream() as stream:
        while True:
            try:
                chunks.append(stream.blocking_read(65536))
            except Err:
                break  # closed: the body is over
    IncomingBody.finish(body)
    return b"".join(chunks)


def fetch(url: str):
    """`GET url` through the host, which allows only the sidecar's hosts."""
    parts = urlsplit(url)
    request = OutgoingRequest(Fields())
    request.set_scheme(Scheme_Https() if parts.scheme == "https" else Scheme_Http())
    request.set_authority(parts.netloc)
    request.set_path_with_query(parts.path + (f"?{parts.query}" if parts.query else ""))
    # Finished with no write: an empty body needs none.
    OutgoingBody.finish(request.body(), None)
    future = outgoing_handler.handle(request, None)
    with future.subscribe() as ready:
        ready.block()
    outcome = future.get()
    if isinstance(outcome.value, Err):
        raise RuntimeError(f"fetching {url} failed: {outcome.value.value}")
    response = outcome.value.value
    return response.status(), read_all(response.consume())
