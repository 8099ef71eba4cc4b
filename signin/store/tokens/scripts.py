"""The Lua scripts of the token store: each checks and changes one key in one step.

A script runs whole, nothing else running meanwhile, so what it reads and what
it writes cannot be split by another client: a rotation that checks the
refresh digest and rewrites the record, an index write that adds a session and
marks the oldest for eviction. Every script touches one key (``KEYS[1]``), so
each runs on Redis Cluster too. The scripts that read or write a session's
record start with ``LUA_RECORD`` (``records``), which names its fields.
"""

from __future__ import annotations

from signin.store.tokens.records import CREATED_DIGITS, LUA_RECORD, REF_LENGTH

# Replace a value only if it is still the one that was read.
COMPARE_AND_SET = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
end
return false
"""

# Mark the oldest live sessions (at time `now`) but `keep` beyond `cap` as being
# evicted (score -1): they stay findable and no longer count. Returns every
# member being evicted, for the caller to end.
LUA_EVICT_OLDEST = """
local function evict_oldest(key, keep, now, cap)
  local live = redis.call('ZRANGEBYSCORE', key, '(' .. now, '+inf')
  local excess = #live - tonumber(cap)
  if excess > 0 then
    table.sort(live)
    for _, member in ipairs(live) do
      if excess == 0 then break end
      if member ~= keep then
        redis.call('ZADD', key, -1, member)
        excess = excess - 1
      end
    end
  end
  return redis.call('ZRANGEBYSCORE', key, '-inf', '(0')
end
"""

# Add session ARGV[1] to its user's index with score ARGV[2]; at time ARGV[3],
# drop the expired, and keep the index until its last session's score. Beyond
# ARGV[4] live sessions, if another live session signed in at or before ARGV[5]
# (its key may have expired before its rounded-up score), return {1, every
# such member}, for the caller to see which are gone (EVICT); else mark the
# oldest others as being evicted and return {0, every member being evicted}.
INDEX = (
    LUA_EVICT_OLDEST
    + f"""
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, ARGV[3])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('EXPIREAT', KEYS[1], last[2] + 1)
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[3], '+inf')
if #live > tonumber(ARGV[4]) then
  local doubtful = {{}}
  for _, member in ipairs(live) do
    -- an older index's members are bare refs, their sign-in time unknown
    local created = #member > {REF_LENGTH} and tonumber(string.sub(member, 1, {CREATED_DIGITS}), 16)
    if member ~= ARGV[1] and not (created and created > tonumber(ARGV[5])) then
      table.insert(doubtful, member)
    end
  end
  if #doubtful > 0 then return {{1, doubtful}} end
end
return {{0, evict_oldest(KEYS[1], ARGV[1], ARGV[3], ARGV[4])}}
"""
)

# Drop members ARGV[4...], whose sessions are gone, from a user's index; then
# at time ARGV[2], mark the oldest live sessions but ARGV[1] beyond ARGV[3] as
# being evicted. Returns every member being evicted.
EVICT = (
    LUA_EVICT_OLDEST
    + """
for i = 4, #ARGV do redis.call('ZREM', KEYS[1], ARGV[i]) end
return evict_oldest(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
"""
)

# Move a live member ARGV[1] to score ARGV[2] (not one being evicted; nor one
# gone, unless ARGV[4] is 1), at time ARGV[3] drop the expired, and keep the
# index as long as its last session.
REINDEX = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) < 0 then return 0 end
if not score and ARGV[4] ~= '1' then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, ARGV[3])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('EXPIREAT', KEYS[1], last[2] + 1)
return 1
"""

# Rotate a session whose current refresh digest is ARGV[1]: new access and
# refresh digests ARGV[2], ARGV[3], at ARGV[4] s = ARGV[5] ms; the access
# token lives ARGV[6] s, the key ARGV[7] s, the refresh token ARGV[8] s, the
# session ARGV[9] s from its sign-in (0: no limit). Returns {1, record as it
# was, record as it is} if rotated; {2, record} if this very rotation was
# already made (the client's retry); {0, record} if the digest is another;
# nothing if there is no session or its refresh token or itself has expired.
# Lua compares interned strings by identity, so the time taken does not
# depend on how much of a digest matches.
ROTATE = (
    LUA_RECORD
    + """
local value = redis.call('GET', KEYS[1])
if not value then return false end
local s = load_record(value)
if s[F.refresh_digest] ~= ARGV[1] then
  if s[F.previous_refresh_digest] == ARGV[1] and s[F.access_digest] == ARGV[2] and s[F.refresh_digest] == ARGV[3] then
    return {2, value}
  end
  return {0, value}
end
if s[F.cancelled_digest] == ARGV[3] then return {0, value} end
local now = tonumber(ARGV[4])
if now >= s[F.issued_at] + tonumber(ARGV[8]) then return false end
local created = s[F.issued_at] - s[F.age_at_issue]
local ends = now + tonumber(ARGV[7])
if tonumber(ARGV[9]) > 0 then ends = math.min(ends, created + tonumber(ARGV[9])) end
if now >= ends then return false end
s[F.issued_at], s[F.access_lifetime] = now, math.min(now + tonumber(ARGV[6]), ends) - now
s[F.age_at_issue], s[F.used_after_issue] = now - created, 0
s[F.access_digest], s[F.refresh_digest] = ARGV[2], ARGV[3]
s[F.previous_refresh_digest], s[F.rotated_at_ms], s[F.cancelled_digest] = ARGV[1], tonumber(ARGV[5]), ''
local rotated = dump_record(s)
redis.call('SET', KEYS[1], rotated, 'EX', ends - now)
return {1, value, rotated}
"""
)

# Undo the rotation of refresh digest ARGV[1] to the new refresh digest ARGV[2],
# whose answer never reached the client: if it was made, the presented refresh
# token is current again (its access token stays dead); if not, it never will
# be. Safe in either order with the rotation, and twice. Returns the record
# it leaves, or nothing if the session is gone or has moved on.
UNDO_ROTATION = (
    LUA_RECORD
    + """
local value = redis.call('GET', KEYS[1])
if not value then return false end
local s = load_record(value)
if s[F.refresh_digest] == ARGV[2] and s[F.previous_refresh_digest] == ARGV[1] then
  s[F.refresh_digest], s[F.access_digest] = ARGV[1], ''
  s[F.previous_refresh_digest], s[F.rotated_at_ms] = '', 0
elseif s[F.refresh_digest] ~= ARGV[1] then
  return false
end
s[F.cancelled_digest] = ARGV[2]
local undone = dump_record(s)
redis.call('SET', KEYS[1], undone, 'KEEPTTL')
return undone
"""
)

# Note the use of access digest ARGV[1] at ARGV[2], unless noted less than ARGV[3] s ago.
TOUCH = (
    LUA_RECORD
    + """
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
local s = load_record(value)
local now = tonumber(ARGV[2])
if s[F.access_digest] ~= ARGV[1] or now - s[F.issued_at] - s[F.used_after_issue] < tonumber(ARGV[3]) then return 0 end
s[F.used_after_issue] = now - s[F.issued_at]
redis.call('SET', KEYS[1], dump_record(s), 'KEEPTTL')
return 1
"""
)
