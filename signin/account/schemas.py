"""Marshmallow schemas: what the account endpoints accept and answer."""

from __future__ import annotations

from flask import current_app
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates

from signin.errors import InvalidScope
from signin.models import storable


class Text(fields.String):
    """A string the database can hold and compare (``models.storable``)."""

    default_error_messages = {"unstorable": "Not valid text: it holds a lone surrogate or a NUL character."}

    def __init__(self, **kwargs: object) -> None:
        # Documents the NUL half; no JSON Schema can say "no lone surrogates".
        super().__init__(**kwargs, metadata={"pattern": "^[^\\u0000]*$"})

    def _deserialize(self, value: object, attr: str | None, data: object, **kwargs: object) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if not storable(text):
            raise self.make_error("unstorable")
        return text


class RequestSchema(Schema):
    class Meta:
        unknown = EXCLUDE


class SigninSchema(RequestSchema):
    username = Text(required=True, validate=validate.Length(1, 150))
    password = fields.String(required=True, load_only=True, validate=validate.Length(1, 1024))
    client_id = fields.String(load_default=None, validate=validate.Length(1, 150))
    scope = fields.String(load_default=None, validate=validate.Length(1, 1000))

    @validates("client_id")
    def _known_client(self, value: str | None, **_: object) -> None:
        if value is not None and value not in current_app.config["SIGNIN_CLIENTS"]:
            raise ValidationError("Unknown client.")


class RefreshSchema(RequestSchema):
    refresh_token = fields.String(required=True, load_only=True, validate=validate.Length(1, 512))


class SignoutSchema(RequestSchema):
    everywhere = fields.Boolean(load_default=False, metadata={"description": "End every session of the user."})


class TokenRequestSchema(RequestSchema):
    token = fields.String(required=True, load_only=True, validate=validate.Length(1, 512))
    # RFC 7009 2.1: a hint the server cannot use is ignored, not refused.
    token_type_hint = fields.String(load_default=None, validate=validate.Length(max=64))


class TokenSchema(Schema):
    access_token = fields.String(required=True)
    expires_in = fields.String(required=True, metadata={"example": "604800"})
    token_type = fields.String(required=True, metadata={"example": "Bearer"})
    refresh_token = fields.String(required=True)
    client_id = fields.String(required=True)
    scope = fields.String(required=True, metadata={"example": "read write"})


class TokenResponseSchema(Schema):
    token = fields.Nested(TokenSchema, required=True)


class MeSchema(Schema):
    username = fields.String(required=True)
    client_id = fields.String(required=True)
    scope = fields.String(required=True)
    expires_at = fields.String(required=True, metadata={"format": "date-time", "example": "2026-12-06T09:00:00Z"})


class IntrospectionSchema(Schema):
    active = fields.Boolean(required=True)
    sub = fields.String()
    username = fields.String()
    client_id = fields.String()
    scope = fields.String()
    token_type = fields.String(metadata={"example": "Bearer"})
    exp = fields.Integer()
    iat = fields.Integer()


def grant(client_id: str | None, scope: str | None) -> tuple[str, str]:
    """Return the client and the scope a sign-in gets, or raise ``InvalidScope``."""
    config = current_app.config
    client_id = client_id or config["SIGNIN_CLIENTS"][0]
    if scope is None:
        return client_id, config["SIGNIN_DEFAULT_SCOPE"]
    requested = set(scope.split(" ")) - {""}  # RFC 6749 3.3: delimited by spaces, not other whitespace
    allowed = config["SIGNIN_SCOPES"]
    if not requested or not requested <= set(allowed):
        raise InvalidScope()
    return client_id, " ".join(s for s in allowed if s in requested)
