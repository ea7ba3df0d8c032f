"""The baseline of ``bench.collector_requests``: a bare FastAPI endpoint that parses the body
and answers 200, served by uvicorn exactly as a collector worker is (``serve``)."""

from __future__ import annotations

import sys

import orjson
from fastapi import FastAPI, Request, Response

from sextant.core.service import serve

app = FastAPI()
ANSWER = orjson.dumps({"accepted": 1, "rejected": []})


@app.post("/v1/track")
async def track(request: Request) -> Response:
    orjson.loads(await request.body())
    return Response(ANSWER, media_type="application/json")


if __name__ == "__main__":
    serve(app, "127.0.0.1", int(sys.argv[1]), "warning")
