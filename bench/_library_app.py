"""``examples.own_fastapi_app`` with its capture taken out: the ``off`` side of
``bench.library_capture`` (same model, routes and schemas; no middleware, no monitor started).

    uv run uvicorn bench._library_app:app
"""

from __future__ import annotations

from driftlake import CaptureMiddleware
from examples import own_fastapi_app

app = own_fastapi_app.app
# before the app's first call, when Starlette builds its middleware stack from this list
app.user_middleware = [m for m in app.user_middleware if m.cls is not CaptureMiddleware]
