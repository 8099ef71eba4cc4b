"""Read a request body, JSON or form, and validate it with a marshmallow schema."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

import flask
from flask import request
from marshmallow import Schema, ValidationError
from werkzeug.exceptions import UnsupportedMediaType
from werkzeug.utils import cached_property

from signin.web.errors import InvalidRequest

FORM = "application/x-www-form-urlencoded"
MAX_FORM_FIELDS = 100


class Request(flask.Request):
    """Flask's request, whose body's fields are parsed once, from JSON or a form."""

    @cached_property
    def fields(self) -> dict[str, Any]:
        """The body's fields; an empty body has none."""
        data = self.get_data(cache=True)
        if not data:
            return {}
        if self.is_json:
            try:
                fields = json.loads(data)
            except ValueError:
                raise InvalidRequest("The body is not valid JSON.") from None
            except RecursionError:
                raise InvalidRequest("The JSON body is nested too deeply.") from None
            if not isinstance(fields, dict):
                raise InvalidRequest("The JSON body must be an object.")
            return fields
        if self.mimetype == FORM:
            # The body is already read and small (MAX_CONTENT_LENGTH); werkzeug's form
            # parser, built for streamed multipart, costs ten times more. First value wins.
            try:
                text = data.decode("utf-8", "replace")
                pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
            except ValueError:
                raise InvalidRequest(f"The form body has more than {MAX_FORM_FIELDS} fields.") from None
            return dict(reversed(pairs))
        raise UnsupportedMediaType("Send the body as application/json or application/x-www-form-urlencoded.")


def body_fields() -> dict[str, Any]:
    """Return the current request's body fields (see ``Request.fields``)."""
    return request.fields  # type: ignore[attr-defined]


def load(schema: Schema) -> dict[str, Any]:
    """Validate the request body against ``schema``; bad input is a 400 with ``fields``."""
    try:
        return schema.load(body_fields())
    except ValidationError as exc:
        fields = exc.normalized_messages()
        raise InvalidRequest("The request body has invalid fields.", fields=fields) from None
