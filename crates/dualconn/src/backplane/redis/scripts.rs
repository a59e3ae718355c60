//! The Lua scripts: each decision that must be atomic across nodes is one script.
//!
//! Keys, under the configured prefix `P` (so deployments and test runs can share a Redis):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:p:{player}` | hash | `seq` (last number given), `base` (where the counter was seeded: nothing exists between an older number and it), `sid`, `sid_at` (ms), `gen` (session generation), `cn` (connection order) |
//! | `P:r:{player}` | list | replaced session ids, newest first, at most 32 |
//! | `P:h:{player}` | stream | history: entry id `{seq}-0`, fields `t` (ms) and `j` (the event's JSON) |
//! | `P:c:{player}` | sorted set | live connections `node|conn_id|w-or-s`, scored by join order |
//! | `P:np:{node}` | set | players with a connection on that node |
//! | `P:nodes` | sorted set | node ids scored by their last heartbeat (ms, Redis clock) |
//! | `P:s:{node}` | string | the node's latest report (JSON), expiring with the node |
//! | `P:rm:{room}` | set | the room's members (may hold forgotten players until the room is next read) |
//! | `P:pr:{player}` | set | the player's rooms: the truth of membership; expires with the player's other keys |
//! | `P:rooms` | set | rooms with members |
//! | `P:memberships` | string | how many entries the `P:rm:*` sets hold |
//! | `P:off` | sorted set | lifecycle webhook only: players whose last connection closed, scored by when the grace ends (ms, Redis clock) |
//!
//! With the lifecycle webhook, `P:p:{player}` also holds `ps` = `1` while the player counts as
//! online: set by the join that found it unset (that join's node sends `player_online`), and
//! cleared by `OFFLINE_DUE` once the player has had no connection on a live node for the whole
//! grace (the node whose heartbeat ran it sends `player_offline`). Every script that can take a
//! player's last connection away (a leave, a new session, a node forgotten) puts the player in
//! `P:off`. Each decision is one script, so exactly one node sends each notice.
//!
//! Channel `P:ch:{node}` carries what a node must act on:
//! - `E <head len> <tail len>\n<head><tail>\n<player> <seq>\n…`: events, one template for all
//!   the listed players (the payload crosses Redis once per node and script call, never once
//!   per player; a broadcast makes one call per chunk of players);
//! - `T <player> <generation> <session>`: a new session; end connections admitted under an older
//!   generation;
//! - `X <player>\n<conn id>\n…`: the per-player cap evicted these connections.
//!
//! Every key a script touches is derived from its arguments, so this needs one Redis (or one
//! primary), not Redis Cluster. Numbers stay below 2^53, which Lua's doubles hold exactly, and
//! are formatted with `%d`, never `tostring`.

/// Helpers every script starts with. `P` is always `ARGV[1]`.
macro_rules! lua {
    ($body:literal) => {
        concat!(
            r#"
local P = ARGV[1]
local function ms() local t = redis.call('TIME'); return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) end
local function num(n) return string.format('%d', n) end
local function node_of(m) return string.match(m, '^([^|]*)|') end
local function alive_nodes(ttl)
  local alive, list = {}, redis.call('ZRANGEBYSCORE', P .. ':nodes', num(ms() - ttl), '+inf')
  for _, id in ipairs(list) do alive[id] = true end
  return alive, list
end
local function next_seq(player)
  local pk = P .. ':p:' .. player
  -- Increment first, check after: one command per event instead of two. A counter that
  -- exists never reads 1 (it started at a clock), so 1 means there was none.
  local seq = redis.call('HINCRBY', pk, 'seq', 1)
  if seq == 1 then
    -- A counter Redis does not have starts at its clock in microseconds: above every number
    -- given before, even after Redis lost its data.
    local t = redis.call('TIME')
    local seed = t[1] .. string.format('%06d', tonumber(t[2]))
    redis.call('HSET', pk, 'seq', seed, 'base', seed)
    seq = redis.call('HINCRBY', pk, 'seq', 1)
  end
  return seq
end
-- seq and at (ms) come formatted: each is formatted once per player or call, not at every use.
local function keep(player, seq, json, hsize, httl, at)
  if hsize > 0 then
    local hk = P .. ':h:' .. player
    redis.call('XADD', hk, 'MAXLEN', hsize, seq .. '-0', 't', at, 'j', json)
    redis.call('PEXPIRE', hk, httl)
  end
end
local function prune(ck, alive)
  for _, m in ipairs(redis.call('ZRANGE', ck, 0, -1)) do
    if not alive[node_of(m)] then redis.call('ZREM', ck, m) end
  end
end
local function idle(player, sttl)
  redis.call('PEXPIRE', P .. ':p:' .. player, sttl)
  redis.call('PEXPIRE', P .. ':r:' .. player, sttl)
  redis.call('PEXPIRE', P .. ':pr:' .. player, sttl)
end
-- A member whose own room set no longer names the room was forgotten (its keys expired with
-- the session ttl): it leaves the room here, lazily.
local function room_members(room)
  local rk, out = P .. ':rm:' .. room, {}
  for _, player in ipairs(redis.call('SMEMBERS', rk)) do
    if redis.call('SISMEMBER', P .. ':pr:' .. player, room) == 1 then
      table.insert(out, player)
    else
      redis.call('SREM', rk, player)
      redis.call('DECR', P .. ':memberships')
    end
  end
  if #out == 0 then redis.call('SREM', P .. ':rooms', room) end
  return out
end
-- grace: ms as a string, or '' when no lifecycle webhook listens.
local function offline_later(player, grace)
  if grace ~= '' and redis.call('HGET', P .. ':p:' .. player, 'ps') == '1' then
    redis.call('ZADD', P .. ':off', num(ms() + tonumber(grace)), player)
  end
end
local function forget_node(gone, sttl, grace)
  local prefix = gone .. '|'
  for _, player in ipairs(redis.call('SMEMBERS', P .. ':np:' .. gone)) do
    local ck = P .. ':c:' .. player
    local removed = 0
    for _, m in ipairs(redis.call('ZRANGE', ck, 0, -1)) do
      if string.sub(m, 1, #prefix) == prefix then removed = removed + redis.call('ZREM', ck, m) end
    end
    if redis.call('ZCARD', ck) == 0 then
      idle(player, sttl)
      if removed > 0 then offline_later(player, grace) end
    end
  end
  redis.call('DEL', P .. ':np:' .. gone, P .. ':s:' .. gone)
  redis.call('ZREM', P .. ':nodes', gone)
end
local function events_msg(head, tail, list)
  return 'E ' .. #head .. ' ' .. #tail .. '\n' .. head .. tail .. '\n' .. table.concat(list, '\n')
end
-- Numbers, keeps and announces one event to each player: one message per node that holds any
-- of them. Returns `seq, connections` per player, in order.
local function publish_each(players, head, tail, hsize, httl, sttl)
  local at = num(ms())
  -- last[node] is the index of the last player listed for that node: a player with several
  -- connections on one node is listed there once, with no table per player.
  local out, per_node, order, last = {}, {}, {}, {}
  for i, player in ipairs(players) do
    local seq = num(next_seq(player))
    keep(player, seq, head .. seq .. ',"player_id":"' .. player .. '"' .. tail, hsize, httl, at)
    local members = redis.call('ZRANGE', P .. ':c:' .. player, 0, -1)
    local line = player .. ' ' .. seq
    for _, m in ipairs(members) do
      local node = node_of(m)
      if node and last[node] ~= i then
        last[node] = i
        local list = per_node[node]
        if not list then list = {}; per_node[node] = list; order[#order + 1] = node end
        list[#list + 1] = line
      end
    end
    if #members == 0 then idle(player, sttl) end
    out[#out + 1] = seq
    out[#out + 1] = #members
  end
  for _, node in ipairs(order) do
    redis.call('PUBLISH', P .. ':ch:' .. node, events_msg(head, tail, per_node[node]))
  end
  return out
end
"#,
            $body
        )
    };
}

/// ARGV: P, head, tail, history_size, history_ttl_ms, session_ttl_ms, players…
/// Returns `[seq, connections]` per player, in order.
pub const PUBLISH: &str = lua!(
    r#"
local players = {}
for i = 7, #ARGV do table.insert(players, ARGV[i]) end
return publish_each(players, ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6])
"#
);

/// ARGV: P, node_ttl_ms.
/// Who a broadcast reaches: every player with a connection on a live node, each once, in no
/// particular order. The broadcast then numbers them in chunks through PUBLISH (see
/// `RedisBackplane::broadcast`), so nodes deliver the first chunks while Redis numbers the
/// next, and a player is numbered once because it is listed once.
pub const BROADCAST_TARGETS: &str = lua!(
    r#"
local _, nodes = alive_nodes(tonumber(ARGV[2]))
local seen, out = {}, {}
for _, node in ipairs(nodes) do
  for _, player in ipairs(redis.call('SMEMBERS', P .. ':np:' .. node)) do
    if not seen[player] then
      seen[player] = true
      out[#out + 1] = player
    end
  end
end
return out
"#
);

/// ARGV: P, player, requested session ('' for none), candidate session, node, member, cap,
/// reject ('1' refuses past the cap, '0' evicts the oldest), replay start id ('' for none),
/// node_ttl_ms, history_size, node full ('1' when the joining node has no room), lifecycle ('1'
/// when the lifecycle webhook listens).
/// Returns `{'STALE'}`, `{'CONFLICT'}`, `{'FULL'}`, `{'NODE_FULL'}`, or
/// `{'OK', session, session_at_ms, generation, last_seq, now_ms, entries, came_online,
/// session_started}` (the last two `'1'` or `'0'`). Every refusal comes before the first write
/// but `prune`'s, in SPEC §12.15's order (409s, then the full node).
pub const JOIN: &str = lua!(
    r#"
local player, requested = ARGV[2], ARGV[3]
local pk, ck, rk = P .. ':p:' .. player, P .. ':c:' .. player, P .. ':r:' .. player
local alive = alive_nodes(tonumber(ARGV[10]))
prune(ck, alive)
if requested ~= '' and redis.call('LPOS', rk, requested) then return {'STALE'} end
local t = ms()
local cur = redis.call('HGET', pk, 'sid')
local started = '0'
local function set_session(id)
  if cur and cur ~= id then
    redis.call('LPUSH', rk, cur)
    redis.call('LTRIM', rk, 0, 31)
  end
  redis.call('HSET', pk, 'sid', id, 'sid_at', num(t))
  redis.call('HINCRBY', pk, 'gen', 1)
  cur = id
  started = '1'
end
local live = redis.call('ZCARD', ck)
local take
if requested == '' then
  if not cur then take = ARGV[4] end
elseif cur ~= requested then
  if cur and live > 0 then return {'CONFLICT'} end
  take = requested
end
local cap = tonumber(ARGV[7])
if live >= cap and ARGV[8] == '1' then return {'FULL'} end
if ARGV[12] == '1' then return {'NODE_FULL'} end
if take then set_session(take) end
if live >= cap then
  local old = redis.call('ZPOPMIN', ck, live + 1 - cap)
  local by_node = {}
  for i = 1, #old, 2 do
    local node, conn = string.match(old[i], '^([^|]*)|([^|]*)|')
    if node then by_node[node] = (by_node[node] or ('X ' .. player)) .. '\n' .. conn end
  end
  for node, msg in pairs(by_node) do redis.call('PUBLISH', P .. ':ch:' .. node, msg) end
end
redis.call('ZADD', ck, redis.call('HINCRBY', pk, 'cn', 1), ARGV[6])
redis.call('SADD', P .. ':np:' .. ARGV[5], player)
redis.call('PERSIST', pk)
redis.call('PERSIST', rk)
redis.call('PERSIST', P .. ':pr:' .. player)
if redis.call('HEXISTS', pk, 'seq') == 0 then
  local tt = redis.call('TIME')
  local seed = tt[1] .. string.format('%06d', tonumber(tt[2]))
  redis.call('HSET', pk, 'seq', seed, 'base', seed)
end
if not redis.call('HGET', pk, 'gen') then redis.call('HSET', pk, 'gen', '1') end
local online = '0'
if ARGV[13] == '1' then
  redis.call('ZREM', P .. ':off', player)
  if redis.call('HGET', pk, 'ps') ~= '1' then
    redis.call('HSET', pk, 'ps', '1')
    online = '1'
  end
end
local entries = {}
if ARGV[9] ~= '' then
  entries = redis.call('XRANGE', P .. ':h:' .. player, ARGV[9], '+', 'COUNT', ARGV[11])
end
return {'OK', cur, redis.call('HGET', pk, 'sid_at'), redis.call('HGET', pk, 'gen'),
  redis.call('HGET', pk, 'seq'), num(t), entries, online, started}
"#
);

/// ARGV: P, node, session_ttl_ms, grace_ms ('' without the lifecycle webhook), then
/// (player, member) pairs of connections that ended.
pub const LEAVE: &str = lua!(
    r#"
local node, sttl, grace = ARGV[2], ARGV[3], ARGV[4]
local prefix = node .. '|'
for i = 5, #ARGV - 1, 2 do
  local player = ARGV[i]
  local ck = P .. ':c:' .. player
  local removed = redis.call('ZREM', ck, ARGV[i + 1])
  local still = false
  for _, m in ipairs(redis.call('ZRANGE', ck, 0, -1)) do
    if string.sub(m, 1, #prefix) == prefix then still = true; break end
  end
  if not still then redis.call('SREM', P .. ':np:' .. node, player) end
  if redis.call('ZCARD', ck) == 0 then
    idle(player, sttl)
    if removed == 1 then offline_later(player, grace) end
  end
end
return 1
"#
);

/// ARGV: P, player, requested session ('' for none), candidate session, node_ttl_ms,
/// session_ttl_ms, grace_ms ('' without the lifecycle webhook).
/// Returns `{'REPLACED'}` or `{'OK', session, generation, connections_ended}`.
pub const NEW_SESSION: &str = lua!(
    r#"
local player, requested = ARGV[2], ARGV[3]
local pk, ck, rk = P .. ':p:' .. player, P .. ':c:' .. player, P .. ':r:' .. player
if requested ~= '' and redis.call('LPOS', rk, requested) then return {'REPLACED'} end
local id = ARGV[4]
if requested ~= '' then id = requested end
local cur = redis.call('HGET', pk, 'sid')
if cur and cur ~= id then
  redis.call('LPUSH', rk, cur)
  redis.call('LTRIM', rk, 0, 31)
end
redis.call('HSET', pk, 'sid', id, 'sid_at', num(ms()))
local gen = redis.call('HINCRBY', pk, 'gen', 1)
if redis.call('HEXISTS', pk, 'seq') == 0 then
  local tt = redis.call('TIME')
  local seed = tt[1] .. string.format('%06d', tonumber(tt[2]))
  redis.call('HSET', pk, 'seq', seed, 'base', seed)
end
prune(ck, alive_nodes(tonumber(ARGV[5])))
local members = redis.call('ZRANGE', ck, 0, -1)
redis.call('DEL', ck)
local nodes = {}
for _, m in ipairs(members) do
  local node = node_of(m)
  if node and not nodes[node] then
    nodes[node] = true
    redis.call('PUBLISH', P .. ':ch:' .. node, 'T ' .. player .. ' ' .. num(gen) .. ' ' .. id)
    redis.call('SREM', P .. ':np:' .. node, player)
  end
end
idle(player, ARGV[6])
if #members > 0 then offline_later(player, ARGV[7]) end
return {'OK', id, num(gen), #members}
"#
);

/// ARGV: P, player, node_ttl_ms.
/// Returns `{session or '', session_at_ms or '', members…}` with only live nodes' members.
pub const PLAYER: &str = lua!(
    r#"
local player = ARGV[2]
local pk, ck = P .. ':p:' .. player, P .. ':c:' .. player
local alive = alive_nodes(tonumber(ARGV[3]))
local out = {redis.call('HGET', pk, 'sid') or '', redis.call('HGET', pk, 'sid_at') or ''}
for _, m in ipairs(redis.call('ZRANGE', ck, 0, -1)) do
  if alive[node_of(m)] then table.insert(out, m) end
end
return out
"#
);

/// ARGV: P, node_ttl_ms, limit.
/// Every player online on a live node, sorted: `{total, {player, session, members…}…}` with at
/// most `limit` players listed.
pub const ONLINE: &str = lua!(
    r#"
local alive, nodes = alive_nodes(tonumber(ARGV[2]))
local limit = tonumber(ARGV[3])
local seen, players = {}, {}
for _, node in ipairs(nodes) do
  for _, player in ipairs(redis.call('SMEMBERS', P .. ':np:' .. node)) do
    if not seen[player] then seen[player] = true; table.insert(players, player) end
  end
end
table.sort(players)
local listed = {}
for i = 1, math.min(limit, #players) do
  local player = players[i]
  local row = {player, redis.call('HGET', P .. ':p:' .. player, 'sid') or ''}
  for _, m in ipairs(redis.call('ZRANGE', P .. ':c:' .. player, 0, -1)) do
    if alive[node_of(m)] then table.insert(row, m) end
  end
  table.insert(listed, row)
end
return {#players, listed}
"#
);

/// ARGV: P, node_ttl_ms.
/// Cluster-wide counts: `{players_online, websocket_only, sse_only, dual, websocket
/// connections, sse connections, sessions with connections, reports…}`.
pub const STATS: &str = lua!(
    r#"
local alive, nodes = alive_nodes(tonumber(ARGV[2]))
local seen = {}
local online, wso, sseo, dual, ws, sse, sessions = 0, 0, 0, 0, 0, 0, 0
for _, node in ipairs(nodes) do
  for _, player in ipairs(redis.call('SMEMBERS', P .. ':np:' .. node)) do
    if not seen[player] then
      seen[player] = true
      local w, s = 0, 0
      for _, m in ipairs(redis.call('ZRANGE', P .. ':c:' .. player, 0, -1)) do
        if alive[node_of(m)] then
          if string.sub(m, -1) == 'w' then w = w + 1 else s = s + 1 end
        end
      end
      ws, sse = ws + w, sse + s
      if w + s > 0 then
        online = online + 1
        if w > 0 and s > 0 then dual = dual + 1 elseif w > 0 then wso = wso + 1 else sseo = sseo + 1 end
        if redis.call('HEXISTS', P .. ':p:' .. player, 'sid') == 1 then sessions = sessions + 1 end
      end
    end
  end
end
local out = {online, wso, sseo, dual, ws, sse, sessions}
for _, node in ipairs(nodes) do
  local report = redis.call('GET', P .. ':s:' .. node)
  if report then table.insert(out, report) end
end
return out
"#
);

/// ARGV: P, node_ttl_ms.
/// Every live node's latest report.
pub const REPORTS: &str = lua!(
    r#"
local _, nodes = alive_nodes(tonumber(ARGV[2]))
local out = {}
for _, node in ipairs(nodes) do
  local report = redis.call('GET', P .. ':s:' .. node)
  if report then table.insert(out, report) end
end
return out
"#
);

/// ARGV: P, node, report, node_ttl_ms, session_ttl_ms, grace_ms ('' without the lifecycle
/// webhook).
/// Marks the node alive, stores its report, and clears out every node whose heartbeat is older
/// than the ttl: its connections leave every player, so presence, the cap and figures forget
/// it. Returns the ids of the nodes cleared.
pub const HEARTBEAT: &str = lua!(
    r#"
local node, ttl, sttl = ARGV[2], tonumber(ARGV[4]), ARGV[5]
local t = ms()
redis.call('ZADD', P .. ':nodes', num(t), node)
redis.call('SET', P .. ':s:' .. node, ARGV[3], 'PX', num(ttl))
local dead = redis.call('ZRANGEBYSCORE', P .. ':nodes', '-inf', '(' .. num(t - ttl))
for _, gone in ipairs(dead) do forget_node(gone, sttl, ARGV[6]) end
return dead
"#
);

/// ARGV: P, node, session_ttl_ms, then per player: player, session, generation, member count,
/// members….
/// After Redis came back, makes Redis agree with what this node holds: its connections are
/// registered again (Redis may have lost them, or missed a leave), its entries for players it no
/// longer holds go, and a session Redis forgot is restored with a generation no lower than
/// the one its connections were admitted under.
pub const RESYNC: &str = lua!(
    r#"
local node, sttl = ARGV[2], ARGV[3]
local prefix = node .. '|'
local held = {}
local i = 4
while i <= #ARGV do
  local player, sid, gen, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  local pk, ck = P .. ':p:' .. player, P .. ':c:' .. player
  held[player] = true
  if not redis.call('HGET', pk, 'sid') then redis.call('HSET', pk, 'sid', sid, 'sid_at', num(ms())) end
  if tonumber(redis.call('HGET', pk, 'gen') or '0') < gen then redis.call('HSET', pk, 'gen', num(gen)) end
  local mine = {}
  for j = 1, n do mine[ARGV[i + 3 + j]] = true end
  for _, m in ipairs(redis.call('ZRANGE', ck, 0, -1)) do
    if string.sub(m, 1, #prefix) == prefix and not mine[m] then redis.call('ZREM', ck, m) end
  end
  for m, _ in pairs(mine) do
    if not redis.call('ZSCORE', ck, m) then redis.call('ZADD', ck, redis.call('HINCRBY', pk, 'cn', 1), m) end
  end
  redis.call('SADD', P .. ':np:' .. node, player)
  redis.call('PERSIST', pk)
  redis.call('PERSIST', P .. ':pr:' .. player)
  i = i + 4 + n
end
for _, player in ipairs(redis.call('SMEMBERS', P .. ':np:' .. node)) do
  if not held[player] then
    local ck = P .. ':c:' .. player
    for _, m in ipairs(redis.call('ZRANGE', ck, 0, -1)) do
      if string.sub(m, 1, #prefix) == prefix then redis.call('ZREM', ck, m) end
    end
    redis.call('SREM', P .. ':np:' .. node, player)
    if redis.call('ZCARD', ck) == 0 then idle(player, sttl) end
  end
end
return 1
"#
);

/// ARGV: P, player, start id, count. History from `start` on, for filling a gap, and where
/// the counter was seeded (`''` when Redis holds no counter for the player).
pub const HISTORY: &str = lua!(
    r#"
local base = redis.call('HGET', P .. ':p:' .. ARGV[2], 'base') or ''
return {base, redis.call('XRANGE', P .. ':h:' .. ARGV[2], ARGV[3], '+', 'COUNT', ARGV[4])}
"#
);

/// ARGV: P, node, session_ttl_ms, grace_ms ('' without the lifecycle webhook).
/// A node leaving on purpose (shutdown): its connections leave every player at once instead of
/// waiting for the others to notice its silence; a player left with none goes offline after the
/// grace unless it reconnects elsewhere, decided by the nodes that remain.
pub const RETIRE: &str = lua!(
    r#"
forget_node(ARGV[2], ARGV[3], ARGV[4])
return 1
"#
);

/// ARGV: P, room, player, max_members, max_rooms, session_ttl_ms.
/// Returns `{'OK', members}`, `{'ROOM_FULL'}` or `{'TOO_MANY_ROOMS'}`; a refusal changes nothing.
pub const ROOM_JOIN: &str = lua!(
    r#"
local room, player = ARGV[2], ARGV[3]
local rk, prk = P .. ':rm:' .. room, P .. ':pr:' .. player
if redis.call('SISMEMBER', prk, room) == 0 then
  if redis.call('SCARD', rk) >= tonumber(ARGV[4]) and #room_members(room) >= tonumber(ARGV[4]) then
    return {'ROOM_FULL'}
  end
  if redis.call('SCARD', prk) >= tonumber(ARGV[5]) then return {'TOO_MANY_ROOMS'} end
  redis.call('SADD', prk, room)
end
if redis.call('SADD', rk, player) == 1 then redis.call('INCR', P .. ':memberships') end
redis.call('SADD', P .. ':rooms', room)
-- The membership lives as long as the player is remembered: kept while it is connected,
-- forgotten a session ttl after it was last seen.
if redis.call('ZCARD', P .. ':c:' .. player) == 0 then
  redis.call('PEXPIRE', P .. ':p:' .. player, ARGV[6])
  redis.call('PEXPIRE', prk, ARGV[6])
else
  redis.call('PERSIST', prk)
end
return {'OK', redis.call('SCARD', rk)}
"#
);

/// ARGV: P, room, player. Returns the members left.
pub const ROOM_LEAVE: &str = lua!(
    r#"
local room, player = ARGV[2], ARGV[3]
local rk = P .. ':rm:' .. room
redis.call('SREM', P .. ':pr:' .. player, room)
if redis.call('SREM', rk, player) == 1 then redis.call('DECR', P .. ':memberships') end
local left = redis.call('SCARD', rk)
if left == 0 then redis.call('SREM', P .. ':rooms', room) end
return left
"#
);

/// ARGV: P, room, node_ttl_ms. Returns `[player, online]…`, online being 1 when the player
/// has a connection on a live node.
pub const ROOM_MEMBERS: &str = lua!(
    r#"
local alive = alive_nodes(tonumber(ARGV[3]))
local out = {}
for _, player in ipairs(room_members(ARGV[2])) do
  local online = 0
  for _, m in ipairs(redis.call('ZRANGE', P .. ':c:' .. player, 0, -1)) do
    if alive[node_of(m)] then online = 1; break end
  end
  table.insert(out, player)
  table.insert(out, online)
end
return out
"#
);

/// ARGV: P, node_ttl_ms, limit.
/// The lifecycle webhook's offline decision, for the whole cluster at once: every player whose
/// grace has ended and who still has no connection on a live node stops counting as online.
/// Returns those players; the node that ran it sends their `player_offline`. A player found
/// connected again is only taken off the list: its next departure puts it back.
pub const OFFLINE_DUE: &str = lua!(
    r#"
local off = P .. ':off'
local alive = alive_nodes(tonumber(ARGV[2]))
local out = {}
for _, player in ipairs(redis.call('ZRANGEBYSCORE', off, '-inf', num(ms()), 'LIMIT', 0, tonumber(ARGV[3]))) do
  redis.call('ZREM', off, player)
  local connected = false
  for _, m in ipairs(redis.call('ZRANGE', P .. ':c:' .. player, 0, -1)) do
    if alive[node_of(m)] then connected = true; break end
  end
  local pk = P .. ':p:' .. player
  if not connected and redis.call('HGET', pk, 'ps') == '1' then
    redis.call('HDEL', pk, 'ps')
    table.insert(out, player)
  end
end
return out
"#
);

/// ARGV: P, head, tail, history_size, history_ttl_ms, session_ttl_ms, room, except count,
/// except…
/// Publishes to every member not excepted, like PUBLISH. Returns `[player, seq, connections]…`.
pub const ROOM_PUBLISH: &str = lua!(
    r#"
local skip, n = {}, tonumber(ARGV[8])
for i = 9, 8 + n do skip[ARGV[i]] = true end
local players = {}
for _, player in ipairs(room_members(ARGV[7])) do
  if not skip[player] then table.insert(players, player) end
end
local numbered = publish_each(players, ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6])
local out = {}
for i, player in ipairs(players) do
  table.insert(out, player)
  table.insert(out, numbered[2 * i - 1])
  table.insert(out, numbered[2 * i])
end
return out
"#
);

/// ARGV: P, rooms, members per room.
/// Clears forgotten players from a random sample of rooms, so the figures drop them even from
/// rooms nobody reads. The sample bounds the work of one call (at most rooms × members checks)
/// however large the rooms are; repeated every beat, it reaches every room.
pub const ROOM_SWEEP: &str = lua!(
    r#"
for _, room in ipairs(redis.call('SRANDMEMBER', P .. ':rooms', tonumber(ARGV[2]))) do
  local rk = P .. ':rm:' .. room
  for _, player in ipairs(redis.call('SRANDMEMBER', rk, tonumber(ARGV[3]))) do
    if redis.call('SISMEMBER', P .. ':pr:' .. player, room) == 0 then
      redis.call('SREM', rk, player)
      redis.call('DECR', P .. ':memberships')
    end
  end
  if redis.call('SCARD', rk) == 0 then redis.call('SREM', P .. ':rooms', room) end
end
return 1
"#
);
