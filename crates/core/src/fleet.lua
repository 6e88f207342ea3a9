-- pam-otp fleet record: one person's replay guards, failure tallies and lockouts, changed
-- atomically by this one script (crates/core/src/fleet.rs builds its arguments and reads its reply).
-- KEYS[1] enrollments hash, per enrollment fingerprint FP: "FP:step" last TOTP step,
--         "FP:hotp" next HOTP counter, "FP:spent" spent recovery indexes ("0,3"),
--         "FP:used" time of its last accepted code.
-- KEYS[2] person hash: "user" the user-wide tally, "overflow" the tally of new sources
--         while every remembered source is locked (only with the ceiling off).
-- KEYS[3] sources hash: one tally per source.
-- KEYS[4], KEYS[5]: the same two for the failures with enrollments only the administrator
--         can change (custody "administrator", the store). They count as well as the
--         first two, and only a success with such an enrollment clears them: a success
--         with a file the user can write never lowers what guards the store.
-- A tally is "failures:lockouts:locked_until:last_failure". Deadlines come from the
-- server's clock, so hosts with skewed clocks agree on them.
local enrollments = KEYS[1]
local all_set = {person = KEYS[2], sources = KEYS[3]}
local protected_set = {person = KEYS[4], sources = KEYS[5]}
local op = ARGV[1]
local now = tonumber(redis.call('TIME')[1])
local MAX_ENROLLMENTS = 8
local ENROLLMENT_IDLE_SECONDS = 7 * 86400

local function int(text)
  local n = tonumber(text)
  if n == nil then error('pam-otp: malformed argument ' .. tostring(text)) end
  return n
end

local function stored_int(value)
  if not value then return -1 end
  return tonumber(value) or -1
end

local function text(n)
  return string.format('%d', n)
end

local function unpack_tally(packed)
  if packed then
    local f, n, u, s = string.match(packed, '^(%d+):(%d+):(%d+):(%d+)$')
    if f then
      return {failures = tonumber(f), lockouts = tonumber(n), till = tonumber(u), last = tonumber(s)}
    end
  end
  return {failures = 0, lockouts = 0, till = 0, last = 0}
end

local function pack_tally(t)
  return text(t.failures) .. ':' .. text(t.lockouts) .. ':' .. text(t.till) .. ':' .. text(t.last)
end

-- The length of the nth lockout: lockout * 2^(n-1), at most max_lockout.
local function lockout_length(nth, lockout, max_lockout)
  local length = lockout
  for _ = 2, nth do
    if length >= max_lockout then break end
    length = length * 2
  end
  if length > max_lockout then length = max_lockout end
  return length
end

-- Counts one failure on a tally; after threshold of them (0: never) a lockout starts.
local function fail(t, threshold, lockout, max_lockout)
  t.failures = t.failures + 1
  t.last = now
  if threshold == 0 or t.failures < threshold then return 0 end
  t.lockouts = t.lockouts + 1
  t.failures = 0
  t.till = now + lockout_length(t.lockouts, lockout, max_lockout)
  return t.till
end

-- Whether a source without an entry finds the table full of locked sources: it is then
-- not remembered (a locked source is never forgotten, so rotating addresses cannot flush
-- a lock) and counts with the overflow.
local function routes_to_overflow(set, source, max_sources)
  if redis.call('HEXISTS', set.sources, source) == 1 then return false end
  if redis.call('HLEN', set.sources) < max_sources then return false end
  local all = redis.call('HGETALL', set.sources)
  for i = 2, #all, 2 do
    if unpack_tally(all[i]).till <= now then return false end
  end
  return true
end

-- Makes room for a new source: the one whose last failure is oldest among the unlocked.
local function forget_oldest_unlocked(set, max_sources)
  if redis.call('HLEN', set.sources) < max_sources then return end
  local all = redis.call('HGETALL', set.sources)
  local victim, victim_last = nil, math.huge
  for i = 1, #all, 2 do
    local t = unpack_tally(all[i + 1])
    if t.till <= now and t.last < victim_last then victim, victim_last = all[i], t.last end
  end
  if victim then redis.call('HDEL', set.sources, victim) end
end

-- The lockout that refuses this source now: the user-wide one or its own, the later one.
local function lock_in_force(set, source, max_sources)
  local user = unpack_tally(redis.call('HGET', set.person, 'user'))
  local own, scope
  if routes_to_overflow(set, source, max_sources) then
    own, scope = unpack_tally(redis.call('HGET', set.person, 'overflow')), 'others'
  else
    own, scope = unpack_tally(redis.call('HGET', set.sources, source)), 'source'
  end
  if user.till > now and user.till >= own.till then return user.till, 'user' end
  if own.till > now then return own.till, scope end
  return 0, ''
end

-- Keeps at most MAX_ENROLLMENTS enrollments' guards: beyond that, the least recently used
-- one idle for a week goes (its TOTP steps are out of every window by then).
local function forget_idle_enrollment(keep)
  local all = redis.call('HGETALL', enrollments)
  local count, victim, victim_used = 0, nil, math.huge
  for i = 1, #all, 2 do
    local fingerprint = string.match(all[i], '^(.*):used$')
    if fingerprint then
      count = count + 1
      local used = tonumber(all[i + 1]) or 0
      if fingerprint ~= keep and used < victim_used and used + ENROLLMENT_IDLE_SECONDS < now then
        victim, victim_used = fingerprint, used
      end
    end
  end
  if count > MAX_ENROLLMENTS and victim then
    redis.call('HDEL', enrollments, victim .. ':step', victim .. ':hotp', victim .. ':spent',
      victim .. ':used')
  end
end

-- The sets of tallies that guard an enrollment of this custody.
local function guarding(custody)
  if custody == 'administrator' then return {all_set, protected_set} end
  if custody == 'user' then return {all_set} end
  error('pam-otp: unknown custody ' .. tostring(custody))
end

-- Counts one failure from source on one set; returns the source's failures (the person's
-- if the source is not remembered), the person's, and the lockout started (0, '', 0 if none).
local function record_failure(set, source, max_sources, max_failures, max_failures_user,
    lockout, max_lockout, idle_seconds)
  -- max_failures=0 turns every lockout off, the ceiling included.
  local user_threshold = max_failures_user
  if max_failures == 0 then user_threshold = 0 end
  local user = unpack_tally(redis.call('HGET', set.person, 'user'))
  local own, own_field, own_key, scope
  if routes_to_overflow(set, source, max_sources) then
    if user_threshold > 0 then
      -- The ceiling bounds sources nobody remembers: they count user-wide only.
      own = nil
    else
      own, own_key, own_field, scope = unpack_tally(redis.call('HGET', set.person, 'overflow')), set.person, 'overflow', 'others'
    end
  else
    if redis.call('HEXISTS', set.sources, source) == 0 then forget_oldest_unlocked(set, max_sources) end
    own, own_key, own_field, scope = unpack_tally(redis.call('HGET', set.sources, source)), set.sources, source, 'source'
  end
  local own_lock, own_failures = 0, 0
  if own then
    own_lock = fail(own, max_failures, lockout, max_lockout)
    own_failures = own.failures
    redis.call('HSET', own_key, own_field, pack_tally(own))
  end
  local user_lock = fail(user, user_threshold, lockout, max_lockout)
  redis.call('HSET', set.person, 'user', pack_tally(user))
  if not own then own_failures = user.failures end
  local locked_until, lock_scope, lockouts = 0, '', 0
  if user_lock > 0 and user_lock >= own_lock then
    locked_until, lock_scope, lockouts = user_lock, 'user', user.lockouts
  elseif own_lock > 0 then
    locked_until, lock_scope, lockouts = own_lock, scope, own.lockouts
  end
  -- Tallies of a person nobody tries any more go by themselves; the guards never do.
  redis.call('PEXPIRE', set.person, idle_seconds * 1000)
  redis.call('PEXPIRE', set.sources, idle_seconds * 1000)
  return own_failures, user.failures, locked_until, lock_scope, lockouts
end

if op == 'check' or op == 'decide' then
  local fingerprint, source, max_sources = ARGV[2], ARGV[3], int(ARGV[4])
  local sets = guarding(ARGV[5])
  local locked, scope = 0, ''
  for _, set in ipairs(sets) do
    local till, why = lock_in_force(set, source, max_sources)
    if till > locked then locked, scope = till, why end
  end
  if locked > 0 then return {'locked', now, locked, scope} end
  local guards = redis.call('HMGET', enrollments, fingerprint .. ':step', fingerprint .. ':hotp',
    fingerprint .. ':spent')
  local step, hotp, spent = stored_int(guards[1]), stored_int(guards[2]), guards[3] or ''
  if op == 'check' then return {'open', now, step, hotp, spent} end

  local kind, value = ARGV[6], ARGV[7]
  local floor_step, floor_hotp = int(ARGV[8]), int(ARGV[9])
  local max_failures, max_failures_user = int(ARGV[10]), int(ARGV[11])
  local lockout, max_lockout, idle_seconds = int(ARGV[12]), int(ARGV[13]), int(ARGV[14])

  -- A number the host matched is accepted if newer than record and floor; if not, it is a
  -- code that was good once and is used up: refused, not counted (it tests no unknown code).
  local accepted, replayed = false, false
  if kind == 'totp' then
    accepted = int(value) > math.max(step, floor_step)
    if accepted then redis.call('HSET', enrollments, fingerprint .. ':step', value) end
  elseif kind == 'hotp' then
    accepted = int(value) >= math.max(hotp, floor_hotp)
    if accepted then redis.call('HSET', enrollments, fingerprint .. ':hotp', text(int(value) + 1)) end
  elseif kind == 'recovery' then
    int(value)
    accepted = not string.find(',' .. spent .. ',', ',' .. value .. ',', 1, true)
    if accepted then
      local now_spent = value
      if spent ~= '' then now_spent = spent .. ',' .. value end
      redis.call('HSET', enrollments, fingerprint .. ':spent', now_spent)
    end
  end
  replayed = kind ~= 'none' and not accepted

  if accepted then
    redis.call('HSET', enrollments, fingerprint .. ':used', text(now))
    forget_idle_enrollment(fingerprint)
    -- A success clears its source's tally and the user-wide one in the sets guarding this
    -- enrollment; other sources stay locked.
    for _, set in ipairs(sets) do
      redis.call('HDEL', set.sources, source)
      redis.call('HDEL', set.person, 'user')
    end
    return {'accepted', now}
  end
  if replayed then return {'replayed', now} end

  -- Counted in every set guarding this enrollment: the higher counts and the later lockout.
  local source_failures, user_failures, locked_until, lock_scope, lockouts = 0, 0, 0, '', 0
  for _, set in ipairs(sets) do
    local own, user, till, why, n = record_failure(set, source, max_sources, max_failures,
      max_failures_user, lockout, max_lockout, idle_seconds)
    source_failures = math.max(source_failures, own)
    user_failures = math.max(user_failures, user)
    if till > locked_until then locked_until, lock_scope, lockouts = till, why, n end
  end
  return {'rejected', now, source_failures, user_failures, locked_until, lock_scope, lockouts}
elseif op == 'status' then
  return {'status', now, redis.call('HGETALL', enrollments),
    redis.call('HGETALL', all_set.person), redis.call('HGETALL', all_set.sources),
    redis.call('HGETALL', protected_set.person), redis.call('HGETALL', protected_set.sources)}
elseif op == 'unlock' then
  local source = ARGV[2]
  local removed = 0
  for _, set in ipairs({all_set, protected_set}) do
    if source == '' then
      removed = removed + redis.call('DEL', set.person, set.sources)
    else
      removed = removed + redis.call('HDEL', set.sources, source) + redis.call('HDEL', set.person, 'user')
    end
  end
  return {'changed', now, removed}
elseif op == 'reset' then
  return {'changed', now, redis.call('DEL', enrollments, all_set.person, all_set.sources,
    protected_set.person, protected_set.sources)}
end
return redis.error_reply('pam-otp: unknown operation ' .. tostring(op))
