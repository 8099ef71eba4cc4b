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


class NewPassword(fields.String):
    """A password to hash and store: valid Unicode (a lone surrogate cannot be hashed); the policy does the rest."""

    default_error_messages = {"unstorable": "Not valid text: it holds a lone surrogate."}

    def _deserialize(self, value: object, attr: str | None, data: object, **kwargs: object) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise self.make_error("unstorable") from None
        return text


class PasswordChangeSchema(RequestSchema):
    current_password = fields.String(
        required=True,
        load_only=True,
        validate=validate.Length(1, 1024),
        metadata={"description": "The user's password now: the change re-authenticates."},
    )
    new_password = NewPassword(
        required=True,
        load_only=True,
        validate=validate.Length(min=1),
        metadata={"description": "The password to replace it; the password policy applies."},
    )


class SessionSchema(Schema):
    id = fields.String(required=True, metadata={"description": "Names the session; stable across refreshes."})
    client_id = fields.String(required=True, metadata={"description": "The client the session signed in as."})
    scope = fields.String(required=True, metadata={"description": "The scope its tokens grant."})
    created_at = fields.String(
        required=True, metadata={"format": "date-time", "description": "Its sign-in (RFC 3339, UTC)."}
    )
    last_used_at = fields.String(
        required=True,
        metadata={"format": "date-time", "description": "Its last sign-in, refresh or token check, to within minutes."},
    )
    expires_at = fields.String(
        required=True, metadata={"format": "date-time", "description": "When it ends unless refreshed."}
    )
    address = fields.String(required=True, metadata={"description": "The client's address at sign-in."})
    user_agent = fields.String(
        required=True, metadata={"description": "The client's User-Agent at sign-in, cut to 200 characters."}
    )
    current = fields.Boolean(required=True, metadata={"description": "Whether this is the bearer's own session."})


class SessionsSchema(Schema):
    sessions = fields.List(
        fields.Nested(SessionSchema), required=True, metadata={"description": "The user's live sessions, newest first."}
    )


class EndedSchema(Schema):
    ended = fields.Integer(required=True, metadata={"description": "How many sessions ended."})


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
