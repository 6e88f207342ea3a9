-- pam-otp fleet record: one person's replay guards, failure tallies and lockouts, changed
-- atomically by this one script (src/core/fleet.rs builds its arguments and reads its reply).
-- KEYS[1] enrollments hash: "<fingerprint>:step" last TOTP step, "<fingerprint>:hotp" next
--         HOTP counter, "<fingerprint>:spent" spent recovery indexes ("0,3"), "current".
-- KEYS[2] person hash: "failures", "lockouts", "until" (the user-wide ceiling).
-- KEYS[3] sources hash: one field per source, "failures:lockouts:until:seen".
-- Deadlines come from the server's clock, so hosts with skewed clocks agree on them.
local enrollments, person, sources = KEYS[1], KEYS[2], KEYS[3]
local op = ARGV[1]
local now = tonumber(redis.call('TIME')[1])

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

local function source_record(name)
  local packed = redis.call('HGET', sources, name)
  local record = {failures = 0, lockouts = 0, till = 0, seen = 0}
  if packed then
    local f, n, u, s = string.match(packed, '^(%d+):(%d+):(%d+):(%d+)$')
    if f then
      record = {failures = tonumber(f), lockouts = tonumber(n), till = tonumber(u), seen = tonumber(s)}
    end
  end
  return record
end

local function pack(r)
  return text(r.failures) .. ':' .. text(r.lockouts) .. ':' .. text(r.till) .. ':' .. text(r.seen)
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

-- Remembers at most max_sources sources: drops the one seen longest ago, preferring one
-- that is not locked (the user-wide ceiling still counts what a flood of sources tries).
local function forget_old_sources(max_sources, keep)
  if redis.call('HLEN', sources) <= max_sources then return end
  local all = redis.call('HGETALL', sources)
  local oldest, oldest_locked
  local oldest_seen, oldest_locked_seen = math.huge, math.huge
  for i = 1, #all, 2 do
    local name = all[i]
    if name ~= keep then
      local f, n, u, s = string.match(all[i + 1], '^(%d+):(%d+):(%d+):(%d+)$')
      local seen, locked = tonumber(s) or 0, (tonumber(u) or 0) > now
      if locked then
        if seen < oldest_locked_seen then oldest_locked, oldest_locked_seen = name, seen end
      elseif seen < oldest_seen then
        oldest, oldest_seen = name, seen
      end
    end
  end
  local victim = oldest or oldest_locked
  if victim then redis.call('HDEL', sources, victim) end
end

-- The lock in force for this source, user-wide or its own (the later one): 0 if none.
local function lock_in_force(source)
  local person_until = stored_int(redis.call('HGET', person, 'until'))
  local source_until = source_record(source).till
  if person_until > now and person_until >= source_until then return person_until, 'person' end
  if source_until > now then return source_until, 'source' end
  return 0, ''
end

if op == 'check' or op == 'decide' then
  local fingerprint, source = ARGV[2], ARGV[3]
  local locked, scope = lock_in_force(source)
  if locked > 0 then return {'locked', now, locked, scope} end
  local guards = redis.call('HMGET', enrollments, fingerprint .. ':step', fingerprint .. ':hotp',
    fingerprint .. ':spent')
  local step, hotp, spent = stored_int(guards[1]), stored_int(guards[2]), guards[3] or ''
  if op == 'check' then return {'open', now, step, hotp, spent} end

  local kind, value = ARGV[4], ARGV[5]
  local floor_step, floor_hotp = int(ARGV[6]), int(ARGV[7])
  local max_failures, max_failures_user = int(ARGV[8]), int(ARGV[9])
  local lockout, max_lockout = int(ARGV[10]), int(ARGV[11])
  local max_sources, idle_seconds = int(ARGV[12]), int(ARGV[13])

  local accepted = false
  if kind == 'totp' then
    if int(value) > math.max(step, floor_step) then
      redis.call('HSET', enrollments, fingerprint .. ':step', value)
      accepted = true
    end
  elseif kind == 'hotp' then
    if int(value) >= math.max(hotp, floor_hotp) then
      redis.call('HSET', enrollments, fingerprint .. ':hotp', text(int(value) + 1))
      accepted = true
    end
  elseif kind == 'recovery' then
    int(value)
    if not string.find(',' .. spent .. ',', ',' .. value .. ',', 1, true) then
      local now_spent = value
      if spent ~= '' then now_spent = spent .. ',' .. value end
      redis.call('HSET', enrollments, fingerprint .. ':spent', now_spent)
      accepted = true
    end
  end

  if accepted then
    -- A new enrollment starts afresh: the guards of the one it replaced go.
    local previous = redis.call('HGET', enrollments, 'current')
    if previous and previous ~= fingerprint then
      redis.call('HDEL', enrollments, previous .. ':step', previous .. ':hotp', previous .. ':spent')
    end
    redis.call('HSET', enrollments, 'current', fingerprint)
    redis.call('HDEL', sources, source)
    redis.call('DEL', person)
    return {'accepted', now}
  end

  local record = source_record(source)
  local is_new_source = record.seen == 0
  record.failures = record.failures + 1
  record.seen = now
  local source_failures = record.failures
  local locked_until, lockouts = 0, 0
  if max_failures > 0 and record.failures >= max_failures then
    record.lockouts = record.lockouts + 1
    record.failures = 0
    record.till = now + lockout_length(record.lockouts, lockout, max_lockout)
    locked_until, lockouts = record.till, record.lockouts
  end
  redis.call('HSET', sources, source, pack(record))
  if is_new_source then forget_old_sources(max_sources, source) end

  local person_failures = redis.call('HINCRBY', person, 'failures', 1)
  if max_failures_user > 0 and person_failures >= max_failures_user then
    local person_lockouts = redis.call('HINCRBY', person, 'lockouts', 1)
    local person_until = now + lockout_length(person_lockouts, lockout, max_lockout)
    redis.call('HSET', person, 'until', text(person_until), 'failures', '0')
    if person_until > locked_until then locked_until, lockouts = person_until, person_lockouts end
  end
  -- Tallies of a person nobody tries any more go by themselves; the guards never do.
  redis.call('PEXPIRE', person, idle_seconds * 1000)
  redis.call('PEXPIRE', sources, idle_seconds * 1000)
  return {'rejected', now, source_failures, person_failures, locked_until, lockouts}
elseif op == 'status' then
  return {'status', now, redis.call('HGETALL', enrollments), redis.call('HGETALL', person),
    redis.call('HGETALL', sources)}
elseif op == 'unlock' then
  local source = ARGV[2]
  if source == '' then
    return {'changed', now, redis.call('DEL', person, sources)}
  end
  return {'changed', now, redis.call('HDEL', sources, source)}
elseif op == 'reset' then
  return {'changed', now, redis.call('DEL', enrollments, person, sources)}
end
return redis.error_reply('pam-otp: unknown operation ' .. tostring(op))
