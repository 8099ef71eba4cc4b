"""The session record as Redis stores it, named once for Python and for the Lua scripts alike.

A session is one MessagePack array under ``<prefix>s:<ref>``, its fields in
the order of ``Session`` (``ref``, the key's own name, is not stored). Python
reads and writes it with ``Session.load`` and ``Session.dump``; every Lua script
starts with ``LUA_RECORD``, which names the same positions
(``s[F.refresh_digest]``) and reads and writes the same bytes with Redis's own
``cmsgpack``, so adding a field is one edit here.

Bytes count when millions of sessions live, and Redis rounds every value up to
its allocator's next size class: MessagePack has no quotes, brackets or commas
and writes numbers in binary, so the record of a session with a 100-character
user agent is 209 bytes where JSON took 236 (in the 224-byte class, not the
256), and a rotated one 241 where JSON took 275 (256, not 320). For the same
reason trailing fields at their defaults are not stored: most sessions never
need them. Records written by earlier versions, JSON arrays, are still read.

A user's index, ``<prefix>u:<user id>``, is a sorted set of its sessions'
``member``s: the session's sign-in time in fixed-width hex, then its ref, so
that members sort oldest first and a ref is found without reading its session.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import NamedTuple

import msgpack
from redis.client import NEVER_DECODE

# Hex digits of a sign-in time in an index member: fixed width, so members sort by time (until 2106).
CREATED_DIGITS = 8
# Characters of a ref (a 96-bit digest, URL-safe base64) and of a session's public id.
REF_LENGTH = 16
PUBLIC_ID_LENGTH = 12
USER_AGENT_LENGTH = 200
# How a record an earlier version wrote, a JSON array, begins; a MessagePack array never does.
JSON_RECORD = b"["
# Records written before sessions knew where they came from: the eight fields
# up to refresh_digest (the sixth the access token's expiry), then maybe
# previous_refresh_digest and rotated_at_ms.
OLD_REQUIRED = 8
# The option of a command whose reply holds a record: records are MessagePack, not text, so redis-py
# hands them over as bytes instead of decoding them like every other reply (decode_responses). It is
# the option redis-py's own DUMP sends, for the same reason.
RAW: dict[str, object] = {NEVER_DECODE: []}


class Session(NamedTuple):
    """A session as Redis holds it: whose it is, where it came from, and the digests of its live tokens.

    A named tuple, not a frozen dataclass: one is built on every token check,
    and a tuple is built several times faster.
    """

    ref: str  # digest of the selector: the session's key
    user_id: int
    username: str
    client_id: str
    scope: str
    # Times are kept as seconds from issued_at, which fit in fewer bytes.
    issued_at: int  # of the current pair
    access_lifetime: int  # of the current access token, from issued_at
    access_digest: str
    refresh_digest: str
    age_at_issue: int  # how long ago, at issued_at, the session signed in
    used_after_issue: int  # its last sign-in, refresh or token check, to within the touch interval, after issued_at
    address: str  # the client's, at sign-in
    user_agent: str  # at sign-in, cut to USER_AGENT_LENGTH
    # Once rotated: the refresh digest before the current one, and when it was spent, to recognise reuse.
    previous_refresh_digest: str = ""
    rotated_at_ms: int = 0
    # The new refresh digest of a rotation whose answer was lost (see TokenStore.rotate): never to be applied.
    cancelled_digest: str = ""

    def dump(self) -> bytes:
        """Return the record as Redis stores it."""
        fields = list(self[1:])
        while len(fields) > REQUIRED and fields[-1] == DEFAULTS[len(fields) - 1]:
            fields.pop()
        return msgpack.packb(fields)

    @classmethod
    def load(cls, ref: str, value: bytes) -> Session:
        """Return the session stored under ``ref`` (an older record taken as signed in at its last rotation)."""
        fields = json.loads(value) if value.startswith(JSON_RECORD) else msgpack.unpackb(value)
        if len(fields) < REQUIRED:  # there, the access token's expiry was a time, not a lifetime
            fields[5] -= fields[4]
            fields[OLD_REQUIRED:OLD_REQUIRED] = [0, 0, "", ""]
        return cls(ref, *fields)

    @property
    def expires_at(self) -> int:
        """When the current access token expires."""
        return self.issued_at + self.access_lifetime

    @property
    def created_at(self) -> int:
        """When the session signed in."""
        return self.issued_at - self.age_at_issue

    @property
    def last_used_at(self) -> int:
        """When the session last signed in, refreshed or had a token checked (to within the touch interval)."""
        return self.issued_at + self.used_after_issue

    @property
    def member(self) -> str:
        """Name the session in its user's index."""
        return index_member(self.created_at, self.ref)

    @property
    def public_id(self) -> str:
        """Name the session to its user and in logs: stable across rotation, useless as a token or to find one."""
        return public_id(self.ref)


STORED = Session._fields[1:]
REQUIRED = len(STORED) - len(Session._field_defaults)
DEFAULTS = {STORED.index(name): value for name, value in Session._field_defaults.items()}
# The start of every Lua script that reads or writes a record: F.<field> is a field's position
# (Lua counts from 1); load_record fills in the trailing defaults, dump_record leaves them out again.
LUA_RECORD = f"""
local F = {{{", ".join(f"{name} = {i}" for i, name in enumerate(STORED, 1))}}}
local D = {{{", ".join(f"[{i + 1}] = {json.dumps(value)}" for i, value in DEFAULTS.items())}}}
local function load_record(value)
  local s
  if string.sub(value, 1, 1) == {JSON_RECORD.decode()!r} then
    s = cjson.decode(value)
  else
    s = cmsgpack.unpack(value)
  end
  if #s < {REQUIRED} then
    s[F.access_lifetime] = s[F.access_lifetime] - s[F.issued_at]
    for i, field in ipairs({{0, 0, '', ''}}) do table.insert(s, {OLD_REQUIRED} + i, field) end
  end
  for i, default in pairs(D) do
    if s[i] == nil then s[i] = default end
  end
  return s
end
local function dump_record(s)
  for i = #s, {REQUIRED + 1}, -1 do
    if s[i] ~= D[i] then break end
    s[i] = nil
  end
  return cmsgpack.pack(s)
end
"""


def index_member(created_at: int, ref: str) -> str:
    """Return the index member of the session ``ref`` that began at ``created_at``."""
    return f"{created_at:0{CREATED_DIGITS}x}{ref}"


def member_ref(member: str) -> str:
    """Return the ref an index member names (an older index's members are bare refs)."""
    return member[-REF_LENGTH:]


def public_id(ref: str) -> str:
    """Return the public id of the session ``ref``: a digest of it, from which no key or token follows."""
    return base64.urlsafe_b64encode(hashlib.sha256(ref.encode("ascii")).digest()).decode("ascii")[:PUBLIC_ID_LENGTH]
