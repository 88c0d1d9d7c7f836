-- FINISH: settle or release one admission (dataplane/counters/redis.py).
-- KEYS: as for ADMIT. ARGV[1]: JSON [now, rid, cost, tokens, [[tpm, flight(0|1), [expires_at_ms,
-- ...]], ...]]. Releases the request's reservations, adds cost and tokens, leaves the flight sets.
local p = cjson.decode(ARGV[1])
local now, rid, cost, tokens, scopes = p[1], p[2], p[3], p[4], p[5]
local MARGIN, DAY = 60000, 86400000
local LIFETIME_TTL = 30 * DAY
local function fmt(n) return string.format('%d', n) end
local ki = 1
for si = 1, #scopes do
  local sc = scopes[si]
  local tpm, flight, budgets = sc[1], sc[2], sc[3]
  local ktok, kfl = KEYS[ki + 1], KEYS[ki + 2]
  ki = ki + 3
  if tpm > 0 and tokens > 0 then
    redis.call('HINCRBY', ktok, fmt(math.floor(now / 1000)), fmt(tokens))
    redis.call('PEXPIRE', ktok, 61000 + MARGIN)
  end
  if flight == 1 then redis.call('ZREM', kfl, rid) end
  for bi = 1, #budgets do
    local k = KEYS[ki]
    ki = ki + 1
    local amt = redis.call('HGET', k, 'r:' .. rid)
    if amt then
      redis.call('HINCRBY', k, 'reserved', fmt(-tonumber(amt)))
      redis.call('HDEL', k, 'r:' .. rid)
    end
    if redis.call('HGET', k, 'tail') == rid then redis.call('HDEL', k, 'tail') end
    if cost > 0 then
      redis.call('HINCRBY', k, 'spent', fmt(cost))
      local exp = budgets[bi]
      if exp > 0 then redis.call('PEXPIREAT', k, fmt(exp + DAY)) else redis.call('PEXPIRE', k, LIFETIME_TTL) end
    end
  end
end
return 1
