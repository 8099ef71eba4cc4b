"""The app's JSON provider: Flask's, compact and unsorted, with its encoder built once."""

from __future__ import annotations

import json
from typing import Any, cast

from flask import Flask, Response
from flask.json.provider import DefaultJSONProvider


class CompactJSON(DefaultJSONProvider):
    """Answer with compact JSON, keys in the order the code wrote them, from one encoder.

    Flask's provider calls ``json.dumps`` with options for every answer, which
    builds a new encoder each time: that costs as much as encoding a small body.
    Answers are compact in debug mode too; programs read them.
    """

    sort_keys = False

    def __init__(self, app: Flask) -> None:
        super().__init__(app)
        self.encoder = json.JSONEncoder(
            default=self.default, ensure_ascii=self.ensure_ascii, sort_keys=self.sort_keys, separators=(",", ":")
        )

    def response(self, *args: Any, **kwargs: Any) -> Response:
        body = self.encoder.encode(self._prepare_response_obj(args, kwargs))
        return cast(Response, self._app.response_class(f"{body}\n", mimetype=self.mimetype))
