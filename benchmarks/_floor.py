"""The framework floor for ``ingest.py``: a bare aiohttp receiver that only parses the JSON.

python benchmarks/_floor.py PORT
"""

from __future__ import annotations

import json
import sys

from aiohttp import web


async def receive(request: web.Request) -> web.Response:
    body = json.loads(await request.read())
    return web.json_response({"status": "accepted", "alerts": len(body.get("alerts", []))})


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def main() -> None:
    app = web.Application(client_max_size=10 * 1024 * 1024)
    app.router.add_post("/webhook/alertmanager", receive)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
