-- pam-otp fleet record: one person's state (the state file's binary form) and its version
-- in one hash. This script knows no rule: it reads the record with the server's clock and
-- writes a record back only if its version is unchanged (compare-and-set). The hosts
-- decide, with the same code as the file store (crates/core/src/fleet.rs).
-- KEYS[1] the record: "version" (writes so far, 0 or missing: none), "state" (bytes).
-- KEYS[2..] the keys of the record format before this one, to refuse them, never guess.
local record, op = KEYS[1], ARGV[1]
if op == 'read' then
  local time = redis.call('TIME')
  local stored = redis.call('HMGET', record, 'version', 'state')
  local old = 0
  if not stored[1] then
    for i = 2, #KEYS do old = old + redis.call('HLEN', KEYS[i]) end
  end
  return {time[1], time[2], stored[1] or '0', stored[2] or '', old}
elseif op == 'write' then
  -- ARGV[2] the version the host read, ARGV[3] the new state.
  local version = redis.call('HGET', record, 'version') or '0'
  if version ~= ARGV[2] then return {'changed', version} end
  local written = string.format('%d', tonumber(version) + 1)
  redis.call('HSET', record, 'version', written, 'state', ARGV[3])
  return {'written', written}
elseif op == 'forget-old' then
  local removed = 0
  for i = 2, #KEYS do removed = removed + redis.call('DEL', KEYS[i]) end
  return removed
end
return redis.error_reply('pam-otp: unknown operation ' .. tostring(op))
