"""Marshmallow schemas: what the account endpoints accept and answer.

Every field says what it is and shows a value in its metadata
(``{"description": ..., "example": ...}``): the OpenAPI document and the API
page are built from them, and tests/test_openapi.py fails on a field without
a description or an operation without a valid example.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from flask import current_app
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates

from signin.store.models import storable
from signin.web.errors import InvalidScope

# Examples of the shape only, never issued: a session's two tokens share its
# selector (signin.store.tokens).
ACCESS_TOKEN = "sGHa268f9cZQxjFGUK8tRg.eLj7nCnl2P7Fe61qfnGzFCNul-mTeMNeGHZ4djxnllw"  # noqa: S105
REFRESH_TOKEN = "sGHa268f9cZQxjFGUK8tRg.wMjNOjqz6_iueeqQKbYgiIramxZ8KrtR3RuBiZX2yh0"  # noqa: S105


class Text(fields.String):
    """A string the database can hold and compare (``models.storable``)."""

    default_error_messages = {"unstorable": "Not valid text: it holds a lone surrogate or a NUL character."}

    def __init__(self, *, metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        # Documents the NUL half; no JSON Schema can say "no lone surrogates".
        super().__init__(**kwargs, metadata={**(metadata or {}), "pattern": "^[^\\u0000]*$"})

    def _deserialize(self, value: object, attr: str | None, data: object, **kwargs: object) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if not storable(text):
            raise self.make_error("unstorable")
        return text


class RequestSchema(Schema):
    class Meta:
        unknown = EXCLUDE


class SigninSchema(RequestSchema):
    # The seed page's descriptions, word for word.
    username = Text(
        required=True,
        validate=validate.Length(1, 150),
        metadata={"description": "The username of the user.", "example": "alice"},
    )
    password = fields.String(
        required=True,
        load_only=True,
        validate=validate.Length(1, 1024),
        metadata={"description": "The password of the user.", "example": "correct horse battery staple"},
    )
    # Absent means the default; null is no client, so it is refused like any
    # other unknown one. The document lists the configured clients and
    # scopes (signin.web.openapi), which this class cannot know.
    client_id = fields.String(
        load_default=None,
        allow_none=False,
        validate=validate.Length(1, 150),
        metadata={"description": "The client asking: one of the configured clients. Omitted: the first of them."},
    )
    scope = fields.String(
        load_default=None,
        allow_none=False,
        validate=validate.Length(1, 1000),
        metadata={
            "description": "The scopes asked for, separated by spaces: some of the allowed scopes. "
            "Omitted: the configured default scope."
        },
    )
    otp = fields.String(
        load_only=True,
        validate=validate.Length(1, 64),
        metadata={
            "description": "For a user with TOTP: a current 6-digit code, or an unused recovery code. "
            "Without it, a right password answers 401 mfa_required."
        },
    )

    @validates("client_id")
    def _known_client(self, value: str | None, **_: object) -> None:
        if value is not None and value not in current_app.config["SIGNIN_CLIENTS"]:
            raise ValidationError("Unknown client.")


class TotpEnrolSchema(RequestSchema):
    password = fields.String(
        required=True,
        load_only=True,
        validate=validate.Length(1, 1024),
        metadata={
            "description": "The user's password: enrolment re-authenticates.",
            "example": "correct horse battery staple",
        },
    )


class TotpEnrolmentSchema(Schema):
    secret = fields.String(
        required=True,
        metadata={
            "description": "The new TOTP secret, in base32; pending until confirmed.",
            "example": "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
        },
    )
    otpauth_uri = fields.String(
        required=True,
        metadata={
            "description": "The secret as an otpauth:// URI, for an authenticator app (a QR code of it, say).",
            "example": "otpauth://totp/signin:alice?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=signin",
        },
    )


class TotpConfirmSchema(RequestSchema):
    code = fields.String(
        required=True,
        load_only=True,
        validate=validate.Regexp(r"^[0-9]{6}$", error="A code is 6 digits."),
        metadata={"description": "A current 6-digit code of the pending secret.", "example": "123456"},
    )


class RecoveryCodesSchema(Schema):
    recovery_codes = fields.List(
        fields.String(),
        required=True,
        metadata={
            "description": "10 single-use recovery codes, shown only this once.",
            "example": ["abcd-efgh-ijkl-mnop"] * 10,
        },
    )


class TotpDisableSchema(RequestSchema):
    password = fields.String(
        required=True,
        load_only=True,
        validate=validate.Length(1, 1024),
        metadata={"description": "The user's password.", "example": "correct horse battery staple"},
    )
    code = fields.String(
        required=True,
        load_only=True,
        validate=validate.Length(1, 64),
        metadata={"description": "A current 6-digit code, or an unused recovery code.", "example": "123456"},
    )


class RefreshSchema(RequestSchema):
    refresh_token = fields.String(
        required=True,
        load_only=True,
        validate=validate.Length(1, 512),
        metadata={
            "description": "The refresh token of the last sign-in or refresh; it works once.",
            "example": REFRESH_TOKEN,
        },
    )


# The token endpoint's grants (RFC 6749 4.3 and 6), each a body of its own: the document offers them as oneOf.
PASSWORD_GRANT, REFRESH_GRANT = "password", "refresh_token"


class PasswordGrantSchema(SigninSchema):
    grant_type = fields.String(
        required=True,
        validate=validate.Equal(PASSWORD_GRANT),
        metadata={"description": "`password`: a username and password (RFC 6749 4.3).", "example": PASSWORD_GRANT},
    )


class RefreshGrantSchema(RefreshSchema):
    grant_type = fields.String(
        required=True,
        validate=validate.Equal(REFRESH_GRANT),
        metadata={"description": "`refresh_token`: a refresh token, once (RFC 6749 6).", "example": REFRESH_GRANT},
    )
    client_id = fields.String(
        load_default=None,
        validate=validate.Length(1, 150),
        metadata={"description": "The client asking: one of the configured clients (or by HTTP Basic). Optional."},
    )


class OAuthTokenSchema(Schema):
    """A token pair in RFC 6749 5.1's shape, as OAuth 2.0 client libraries read it."""

    access_token = fields.String(
        required=True,
        metadata={"description": "Send it as `Authorization: Bearer <access_token>`.", "example": ACCESS_TOKEN},
    )
    token_type = fields.String(required=True, metadata={"description": "Always `Bearer`.", "example": "Bearer"})
    expires_in = fields.Integer(
        required=True,
        metadata={"description": "The access token's lifetime in seconds.", "example": 604800},
    )
    refresh_token = fields.String(
        required=True,
        metadata={
            "description": "Exchange it, once, for a new pair (grant_type=refresh_token).",
            "example": REFRESH_TOKEN,
        },
    )
    scope = fields.String(
        required=True, metadata={"description": "The scopes granted, separated by spaces.", "example": "read write"}
    )


class SignoutSchema(RequestSchema):
    everywhere = fields.Boolean(
        load_default=False,
        metadata={"description": "End every session of the user, not only this one.", "example": False},
    )


class TokenRequestSchema(RequestSchema):
    token = fields.String(
        required=True,
        load_only=True,
        validate=validate.Length(1, 512),
        metadata={"description": "The access or refresh token asked about.", "example": ACCESS_TOKEN},
    )
    # RFC 7009 2.1: a hint the server cannot use is ignored, not refused.
    token_type_hint = fields.String(
        load_default=None,
        validate=validate.Length(max=64),
        metadata={
            "description": "`access_token` or `refresh_token`, as the caller believes; any other value is ignored. "
            "Introspection answers a live refresh token as active only when this says `refresh_token`.",
            "example": "access_token",
        },
    )


class TokenSchema(Schema):
    access_token = fields.String(
        required=True,
        metadata={"description": "Send it as `Authorization: Bearer <access_token>`.", "example": ACCESS_TOKEN},
    )
    expires_in = fields.String(
        required=True,
        metadata={"description": "The access token's lifetime in seconds, as a string of digits.", "example": "604800"},
    )
    token_type = fields.String(required=True, metadata={"description": "Always `Bearer`.", "example": "Bearer"})
    refresh_token = fields.String(
        required=True,
        metadata={
            "description": "Exchange it, once, for a new pair at the refresh endpoint.",
            "example": REFRESH_TOKEN,
        },
    )
    client_id = fields.String(
        required=True, metadata={"description": "The client the tokens were issued to.", "example": "signin"}
    )
    scope = fields.String(
        required=True, metadata={"description": "The scopes granted, separated by spaces.", "example": "read write"}
    )


class TokenResponseSchema(Schema):
    token = fields.Nested(TokenSchema, required=True, metadata={"description": "A new token pair for one session."})


class MeSchema(Schema):
    username = fields.String(required=True, metadata={"description": "The bearer's username.", "example": "alice"})
    client_id = fields.String(
        required=True, metadata={"description": "The client the token was issued to.", "example": "signin"}
    )
    scope = fields.String(
        required=True, metadata={"description": "The scopes granted, separated by spaces.", "example": "read write"}
    )
    expires_at = fields.String(
        required=True,
        metadata={
            "description": "When the access token expires (RFC 3339, UTC).",
            "format": "date-time",
            "example": "2026-12-06T09:00:00Z",
        },
    )


class IntrospectionSchema(Schema):
    active = fields.Boolean(
        required=True,
        metadata={"description": "Whether the token is live; when false, nothing else is said.", "example": True},
    )
    sub = fields.String(metadata={"description": "The user's id.", "example": "42"})
    username = fields.String(metadata={"description": "The user's username.", "example": "alice"})
    client_id = fields.String(metadata={"description": "The client the token was issued to.", "example": "signin"})
    scope = fields.String(metadata={"description": "The scopes granted, separated by spaces.", "example": "read write"})
    token_type = fields.String(
        metadata={"description": "`Bearer`, for an access token; absent for a refresh token.", "example": "Bearer"}
    )
    token_use = fields.String(
        validate=validate.OneOf(["access_token", "refresh_token"]),
        metadata={
            "description": "What the token is for: `access_token`, or `refresh_token` (live only when the request's "
            "token_type_hint is refresh_token: a refresh token is no bearer token).",
            "example": "access_token",
        },
    )
    exp = fields.Integer(metadata={"description": "When the token expires, in Unix seconds.", "example": 1796547600})
    iat = fields.Integer(metadata={"description": "When it was issued, in Unix seconds.", "example": 1795942800})


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
        metadata={
            "description": "The user's password now: the change re-authenticates.",
            "example": "correct horse battery staple",
        },
    )
    new_password = NewPassword(
        required=True,
        load_only=True,
        validate=validate.Length(min=1),
        metadata={
            "description": "The password to replace it; the password policy applies.",
            "example": "a new, long passphrase",
        },
    )


class SessionSchema(Schema):
    id = fields.String(
        required=True,
        metadata={"description": "Names the session; stable across refreshes.", "example": "qeZS4oXhUiJI"},
    )
    client_id = fields.String(
        required=True, metadata={"description": "The client the session signed in as.", "example": "signin"}
    )
    scope = fields.String(
        required=True, metadata={"description": "The scope its tokens grant.", "example": "read write"}
    )
    created_at = fields.String(
        required=True,
        metadata={
            "format": "date-time",
            "description": "Its sign-in (RFC 3339, UTC).",
            "example": "2026-12-01T09:00:00Z",
        },
    )
    last_used_at = fields.String(
        required=True,
        metadata={
            "format": "date-time",
            "description": "Its last sign-in, refresh or token check, to within minutes.",
            "example": "2026-12-01T09:30:00Z",
        },
    )
    expires_at = fields.String(
        required=True,
        metadata={
            "format": "date-time",
            "description": "When it ends unless refreshed.",
            "example": "2026-12-08T09:30:00Z",
        },
    )
    address = fields.String(
        required=True, metadata={"description": "The client's address at sign-in.", "example": "203.0.113.7"}
    )
    user_agent = fields.String(
        required=True,
        metadata={"description": "The client's User-Agent at sign-in, cut to 200 characters.", "example": "curl/8.5.0"},
    )
    current = fields.Boolean(
        required=True, metadata={"description": "Whether this is the bearer's own session.", "example": True}
    )


class SessionsSchema(Schema):
    sessions = fields.List(
        fields.Nested(SessionSchema), required=True, metadata={"description": "The user's live sessions, newest first."}
    )


class EndedSchema(Schema):
    ended = fields.Integer(required=True, metadata={"description": "How many sessions ended.", "example": 2})


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


def scope_pattern(allowed: Sequence[str]) -> str:
    """Return a JSON Schema pattern for what ``grant`` accepts: allowed scopes, separated by spaces."""
    # Escapes ECMA-262's syntax characters only, which every regex dialect reads alike.
    one = "(?:" + "|".join(re.sub(r"[\\^$.|?*+()\[\]{}/]", r"\\\g<0>", scope) for scope in allowed) + ")"
    return f"^ *{one}(?: +{one})* *$"
