"""`POST /slack/actions`: the clicks on Slack's silence buttons.

Slack posts an interaction payload (form field `payload`, JSON) signed with the app's signing secret.
The request is refused with 401 unless `X-Slack-Signature` is the HMAC-SHA256 of its body under
SLACK_SIGNING_SECRET and `X-Slack-Request-Timestamp` is within 5 minutes (app/slack_signature.py),
before its body is parsed at all. A verified click is answered 200 at once (Slack wants an answer
within 3 s), then done in the background (app/slack_clicks.py). Without a signing secret,
ALERTMANAGER_URL or Slack's bot mode the endpoint answers 404 and messages carry no buttons.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import parse_qs

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import JSONResponse, Response

from app.routes import BodyTooLargeError, read_limited
from app.services import services_of
from app.slack_clicks import SlackActions, click_of
from app.slack_signature import SignatureError, verify

log = logging.getLogger(__name__)
router = APIRouter()

MAX_BODY_BYTES = 64 * 1024  # an interaction payload carries the message: a few kB


@router.post("/slack/actions", include_in_schema=False)
async def slack_actions(request: Request, background: BackgroundTasks) -> Response:
    actions: SlackActions | None = services_of(request.app).slack_actions
    if actions is None:
        detail = "Slack buttons are off (SLACK_SIGNING_SECRET, ALERTMANAGER_URL, Slack bot mode)"
        return JSONResponse({"detail": detail}, 404)
    try:
        body = await read_limited(request, MAX_BODY_BYTES)
    except BodyTooLargeError:
        return JSONResponse({"detail": "body too large"}, 413)
    headers = request.headers
    try:
        verify(
            actions.signing_secret,
            headers.get("x-slack-request-timestamp"),
            body,
            headers.get("x-slack-signature"),
        )
    except SignatureError as exc:
        log.warning("slack: refused an action request: %s", exc.reason)
        return JSONResponse({"detail": exc.reason}, 401)
    try:
        payload = json.loads(parse_qs(body.decode())["payload"][0])
    except (UnicodeDecodeError, KeyError, IndexError, ValueError):
        return JSONResponse({"detail": "no interaction payload"}, 400)
    click = click_of(payload)
    if click is not None:
        background.add_task(actions.handle, click)
    return Response(status_code=200)
