-- ADMIT: one admission, checked and recorded in one atomic step (dataplane/counters/redis.py).
-- KEYS: per scope: req, tok, fl, then one key per budget.
-- ARGV[1]: JSON [now, rid, reserve, lease, allow_tail(0|1), [[rpm, rph, tpm, par, [[limit, seed,
-- expires_at_ms], ...]], ...]]
-- Reply: {0, kind, scope, budget, used, limit, reserved, retry_ms} when refused (kind indexes
-- _KINDS in redis.py, scope/budget are 0-based, budget -1 when not a budget), or {1, then per
-- scope: req_min, req_hour, oldest_min, oldest_hour, tokens, in_flight, then per budget: spent,
-- reserved, held}.
local p = cjson.decode(ARGV[1])
local now, rid, reserve, lease, allow_tail, scopes = p[1], p[2], p[3], p[4], p[5], p[6]
local MIN, HOUR, MARGIN, DAY = 60000, 3600000, 60000, 86400000
local LIFETIME_TTL = 30 * DAY
local function fmt(n) return string.format('%d', n) end
local hard, rate, soft = nil, nil, nil
local layout, seeded, held, tails, tokens = {}, {}, {}, {}, {}
local ki = 1
for si = 1, #scopes do
  local sc = scopes[si]
  local rpm, rph, tpm, par, budgets = sc[1], sc[2], sc[3], sc[4], sc[5]
  local kreq, ktok, kfl = KEYS[ki], KEYS[ki + 1], KEYS[ki + 2]
  ki = ki + 3
  local bkeys = {}
  for bi = 1, #budgets do bkeys[bi] = KEYS[ki]; ki = ki + 1 end
  layout[si] = bkeys
  if rpm > 0 or rph > 0 then
    local keep = MIN
    if rph > 0 then keep = HOUR end
    redis.call('ZREMRANGEBYSCORE', kreq, '-inf', fmt(now - keep))
    if not rate and rpm > 0 then
      local lo = '(' .. fmt(now - MIN)
      local count = redis.call('ZCOUNT', kreq, lo, '+inf')
      if count >= rpm then
        local e = redis.call('ZRANGEBYSCORE', kreq, lo, '+inf', 'WITHSCORES', 'LIMIT', count - rpm, 1)
        rate = {2, si - 1, -1, count, rpm, 0, tonumber(e[2]) + MIN - now}
      end
    end
    if not rate and rph > 0 then
      local count = redis.call('ZCARD', kreq)
      if count >= rph then
        local e = redis.call('ZRANGE', kreq, count - rph, count - rph, 'WITHSCORES')
        rate = {3, si - 1, -1, count, rph, 0, tonumber(e[2]) + HOUR - now}
      end
    end
  end
  tokens[si] = 0
  if tpm > 0 then
    local start = math.floor(now / 1000) - 60
    local h = redis.call('HGETALL', ktok)
    local used, secs = 0, {}
    for i = 1, #h, 2 do
      local sec, n = tonumber(h[i]), tonumber(h[i + 1])
      if sec < start then
        redis.call('HDEL', ktok, h[i])
      else
        used = used + n
        secs[#secs + 1] = {sec, n}
      end
    end
    tokens[si] = used
    if not rate and used >= tpm then
      table.sort(secs, function(a, b) return a[1] < b[1] end)
      local left, retry = used, 61000
      for i = 1, #secs do
        left = left - secs[i][2]
        if left < tpm then retry = (secs[i][1] + 61) * 1000 - now; break end
      end
      if retry < 1 then retry = 1 end
      rate = {4, si - 1, -1, used, tpm, 0, retry}
    end
  end
  if par > 0 or #budgets > 0 then
    local expired = redis.call('ZRANGEBYSCORE', kfl, '-inf', fmt(now))
    if #expired > 0 then
      for _, r in ipairs(expired) do
        for bi = 1, #budgets do
          local amt = redis.call('HGET', bkeys[bi], 'r:' .. r)
          if amt then
            redis.call('HINCRBY', bkeys[bi], 'reserved', fmt(-tonumber(amt)))
            redis.call('HDEL', bkeys[bi], 'r:' .. r)
          end
          if redis.call('HGET', bkeys[bi], 'tail') == r then redis.call('HDEL', bkeys[bi], 'tail') end
        end
      end
      redis.call('ZREMRANGEBYSCORE', kfl, '-inf', fmt(now))
    end
    if not rate and par > 0 then
      local n = redis.call('ZCARD', kfl)
      if n >= par then rate = {5, si - 1, -1, n, par, 0, 1000} end
    end
  end
  local s_seed, s_held, s_tail = {}, {}, {}
  for bi = 1, #budgets do
    local lim, seed = budgets[bi][1], budgets[bi][2]
    local v = redis.call('HMGET', bkeys[bi], 'spent', 'reserved', 'tail')
    local spent, reserved, tail = tonumber(v[1]) or 0, tonumber(v[2]) or 0, v[3]
    if seed > spent then spent = seed end
    local avail = lim - spent - reserved
    local amount, is_tail = 0, false
    if reserve <= avail then
      amount = reserve
    elseif allow_tail == 1 and avail > 0 and not tail then
      amount, is_tail = avail, true
    elseif spent >= lim then
      if not hard then hard = {0, si - 1, bi - 1, spent, lim, reserved, 0} end
    elseif not soft then
      soft = {1, si - 1, bi - 1, spent, lim, reserved, 0}
    end
    s_seed[bi], s_held[bi], s_tail[bi] = spent, amount, is_tail
  end
  seeded[si], held[si], tails[si] = s_seed, s_held, s_tail
end
local refusal = hard or rate or soft
if refusal then
  return {0, refusal[1], refusal[2], refusal[3], refusal[4], refusal[5], refusal[6], refusal[7]}
end
local out = {1}
ki = 1
for si = 1, #scopes do
  local sc = scopes[si]
  local rpm, rph, par, budgets = sc[1], sc[2], sc[4], sc[5]
  local kreq, kfl = KEYS[ki], KEYS[ki + 2]
  ki = ki + 3 + #budgets
  local req_min, req_hour, oldest_min, oldest_hour, flight = 0, 0, 0, 0, 0
  if rpm > 0 or rph > 0 then
    local keep = MIN
    if rph > 0 then keep = HOUR end
    redis.call('ZADD', kreq, fmt(now), rid)
    redis.call('PEXPIRE', kreq, keep + MARGIN)
    local lo = '(' .. fmt(now - MIN)
    req_min = redis.call('ZCOUNT', kreq, lo, '+inf')
    oldest_min = tonumber(redis.call('ZRANGEBYSCORE', kreq, lo, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)[2])
    if rph > 0 then
      req_hour = redis.call('ZCARD', kreq)
      oldest_hour = tonumber(redis.call('ZRANGE', kreq, 0, 0, 'WITHSCORES')[2])
    end
  end
  if par > 0 or #budgets > 0 then
    redis.call('ZADD', kfl, fmt(now + lease), rid)
    redis.call('PEXPIRE', kfl, lease + MARGIN)
    flight = redis.call('ZCARD', kfl)
  end
  out[#out + 1] = req_min
  out[#out + 1] = req_hour
  out[#out + 1] = oldest_min
  out[#out + 1] = oldest_hour
  out[#out + 1] = tokens[si]
  out[#out + 1] = flight
  local bkeys = layout[si]
  for bi = 1, #budgets do
    local k, amount = bkeys[bi], held[si][bi]
    redis.call('HSET', k, 'spent', fmt(seeded[si][bi]))
    local reserved = redis.call('HINCRBY', k, 'reserved', fmt(amount))
    redis.call('HSET', k, 'r:' .. rid, fmt(amount))
    if tails[si][bi] then redis.call('HSET', k, 'tail', rid) end
    local exp = budgets[bi][3]
    if exp > 0 then redis.call('PEXPIREAT', k, fmt(exp + DAY)) else redis.call('PEXPIRE', k, LIFETIME_TTL) end
    out[#out + 1] = seeded[si][bi]
    out[#out + 1] = reserved
    out[#out + 1] = amount
  end
end
return out
