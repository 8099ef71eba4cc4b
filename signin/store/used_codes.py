"""One-time codes used once: the TOTP step a user last used, decided atomically in Redis.

The key holds the user's id and a step number, never a code, and lives as long
as a code of that step could still be accepted.
"""

from __future__ import annotations

import secrets

from redis import Redis

# Note that step ARGV[1] of a user was used, by the request ARGV[2], unless that step or a later
# one was used already; the same request asking again (a retry) is answered yes again.
USE_STEP = """
local last = redis.call('GET', KEYS[1])
if last then
  local step, by = string.match(last, '^(%d+):(.*)$')
  if by == ARGV[2] and step == ARGV[1] then return 1 end
  if tonumber(step) >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. ARGV[2], 'EX', ARGV[3])
return 1
"""


def use_step(redis: Redis, prefix: str, user_id: int, step: int, remember: int) -> bool:
    """Record that a user used the code of ``step``; tell whether it was unused (and no later one was).

    Remembered for ``remember`` seconds: as long as a code of that step could still be accepted.
    """
    # Names this request, so that redis-py resending the script after a dropped connection is not a replay.
    nonce = secrets.token_hex(8)
    return bool(redis.eval(USE_STEP, 1, f"{prefix}totp:{user_id}", step, nonce, remember))
