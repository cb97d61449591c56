"""The floor for the ack path: a bare FastAPI app that only reads and parses the body.

`POST /alerts` reads the body, parses it as JSON and answers 202, nothing else; `GET /health`
answers 200 (the bench waits on it). It is served exactly as `alert-enricher serve` serves the
service (app/cli.py): uvicorn on a listening socket bound beforehand with IPPROTO_TCP spelled out,
so asyncio turns Nagle off on its connections as it does on the service's, no access log, no
logging config. Run as `python -m bench.bare --port N`.
"""

from __future__ import annotations

import argparse
import json
import socket

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

app = FastAPI(title="bare")


@app.post("/alerts", status_code=202)
async def alerts(request: Request) -> Response:
    """Read and parse the body; answer as the service does when it accepts."""
    json.loads(await request.body())
    return JSONResponse({"status": "accepted", "id": 0}, 202)


@app.get("/health")
async def health() -> Response:
    return JSONResponse({"status": "ok"})


def listen(host: str, port: int) -> socket.socket:
    """As app.cli.listen: IPPROTO_TCP, so asyncio sets TCP_NODELAY on accepted connections."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    config = uvicorn.Config(app, log_config=None, access_log=False, timeout_graceful_shutdown=15)
    uvicorn.Server(config).run(sockets=[listen(args.host, args.port)])


if __name__ == "__main__":
    main()
