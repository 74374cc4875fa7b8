"""The Python key-value example, route `py/counter`: a counter kept in the
route's store "default" through the standard `wasi:keyvalue` interfaces,
built by componentize-py against `wedge:handler/stateful-handler`. Its
sidecar grants the store (`key_value_stores = ["default"]`).

- `GET /py/counter`: adds 1 to the key `py-counter` and answers
  `{"count": N}`, the new value (1 the first time). Every request runs in a
  fresh instance: the count lasts because the host keeps it.
- A store error (the sidecar does not grant the store, say): `503` with
  `{"error": ...}`, e.g. `store "default": access-denied`.
"""

import json

from wit_world import exports
from wit_world.imports import atomics, store
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)
from componentize_py_types import Err, Ok

STORE = "default"
KEY = "py-counter"


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        try:
            with store.open(STORE) as bucket:
                count = atomics.increment(bucket, KEY, 1)
        except Err as error:
            answer = {"error": f'store "{STORE}": {describe(error.value)}'}
            respond(response_out, 503, answer)
            return
        respond(response_out, 200, {"count": count})


def describe(error: store.Error) -> str:
    """The store's `error` variant as text: `no-such-store`,
    `access-denied`, or `other: <the host's message>`."""
    match error:
        case store.Error_NoSuchStore():
            return "no-such-store"
        case store.Error_AccessDenied():
            return "access-denied"
        case store.Error_Other(value=message):
            return f"other: {message}"


def respond(response_out: ResponseOutparam, status: int, answer: dict) -> None:
    body = json.dumps(answer).encode()
    response = OutgoingResponse(Fields.from_list([("content-type", b"application/json")]))
    response.set_status_code(status)
    outgoing = response.body()
    ResponseOutparam.set(response_out, Ok(response))
    with outgoing.write() as stream:
        # One call writes at most 4096 bytes; these answers are far shorter.
        stream.blocking_write_and_flush(body)
    OutgoingBody.finish(outgoing, None)
