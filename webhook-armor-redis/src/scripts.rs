//! The Lua scripts that make each queue step atomic on the server.
//!
//! Every script reads the time from Redis (`TIME`), never from the client, so
//! workers on machines with skewed clocks agree on lease deadlines and run-at
//! times. All keys share one hash tag, so each script touches one slot.

use std::sync::LazyLock;

use redis::Script;

/// The Lua prelude of every queue script: `now`, the server time in
/// milliseconds (and `now_text`, the same as a string), `call_chunked`,
/// `failed`, `text` and `held`.
///
/// `call_chunked(command, key, values)` runs `command key v1 v2 ...` over
/// `values` in chunks: one command per batch rather than one per job (each
/// `redis.call` costs the server about a microsecond before its work), and
/// never more values in one call than Lua's `unpack` can spread (a few
/// thousand).
///
/// `failed(reply)` tells whether a `redis.pcall` answered an error (such as
/// WRONGTYPE for a job key that holds a completed job's marker).
///
/// `text(number)` is the number as `redis.call` would write it, formatted
/// once per script call. Lua formats every number it hands to `redis.call`
/// with `snprintf("%.14g")`, a few thousand instructions each; per job
/// that was 8.7% of the server's instructions in the delivery bench
/// (callgrind), and a batch mostly repeats the same few values.
///
/// `held(job_key, leased_key, id, token)` is the fencing rule of ack, nack,
/// defer and dead-letter: the job is leased under `token` and its deadline
/// is ahead. The deadline comes from the job's `dl` field, or from `leased`
/// for a job leased before the field was written.
const PRELUDE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function call_chunked(command, key, values)
  for first = 1, #values, 1000 do
    redis.call(command, key, unpack(values, first, math.min(first + 999, #values)))
  end
end
local function failed(reply)
  return type(reply) == 'table' and reply.err ~= nil
end
local texts = {}
local function text(number)
  local written = texts[number]
  if not written then
    written = tostring(number)
    texts[number] = written
  end
  return written
end
local now_text = text(now)
local function held(job_key, leased_key, id, token)
  local f = redis.pcall('HMGET', job_key, 'st', 'tok', 'dl')
  if failed(f) or f[1] ~= 'l' or f[2] ~= token then return false end
  local deadline = f[3] or redis.call('ZSCORE', leased_key, id)
  return deadline and tonumber(deadline) > now
end
";

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}\n{body}"))
}

/// Claim an idempotency key. KEYS: key. ARGV: token, ttl ms.
pub(crate) static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local held = redis.call('GET', KEYS[1])
if not held then
  redis.call('SET', KEYS[1], 'p:' .. ARGV[1], 'PX', ARGV[2])
  return 'acquired'
end
if held == 'c' then return 'completed' end
return 'in_progress'
",
    )
});

/// Complete a held key. KEYS: key. ARGV: token, ttl ms.
pub(crate) static COMPLETE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
if redis.call('GET', KEYS[1]) ~= 'p:' .. ARGV[1] then return 0 end
redis.call('SET', KEYS[1], 'c', 'PX', ARGV[2])
return 1
",
    )
});

/// Release a held key. KEYS: key. ARGV: token.
pub(crate) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
if redis.call('GET', KEYS[1]) ~= 'p:' .. ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
",
    )
});

/// Promote due retries, recover expired leases, lease up to max jobs.
/// KEYS: ready, scheduled, leased. ARGV: max, lease ms, job key prefix,
/// then one fresh token per job. Returns one flat array, six values per
/// leased job: id, payload, meta, attempt, enq, err. The n-th job leased
/// holds the n-th token, so the tokens need not travel back, and a flat
/// reply spares the server a Lua table per job and the client a nested
/// array to parse.
///
/// The deadline is written twice: as the job's score in `leased` (the index
/// that finds expired leases) and as the job's `dl` field, so that ack, nack
/// and dead-letter check their lease with the one HMGET they need anyway.
/// Job keys are read with `pcall`: a key that is not a pending job (a
/// completed job's marker) is skipped rather than failing the whole lease.
pub(crate) static LEASE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local prefix = ARGV[3]
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now_text, 'LIMIT', 0, 1000)) do
  redis.call('ZREM', KEYS[2], id)
  if not failed(redis.pcall('HSET', prefix .. id, 'st', 'r')) then
    redis.call('RPUSH', KEYS[1], id)
  end
end
-- Leases past their deadline belong to crashed or stalled workers: their
-- jobs go to the front, they have waited longest.
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now_text, 'LIMIT', 0, 1000)) do
  redis.call('ZREM', KEYS[3], id)
  if not failed(redis.pcall('HSET', prefix .. id, 'st', 'r', 'tok', '')) then
    redis.call('LPUSH', KEYS[1], id)
  end
end
local ids = redis.call('LPOP', KEYS[1], tonumber(ARGV[1]))
if not ids then return {} end
local deadline = text(now + tonumber(ARGV[2]))
local leased = {}
local deadlines = {}
local n = 0
for _, id in ipairs(ids) do
  local key = prefix .. id
  local f = redis.pcall('HMGET', key, 'payload', 'meta', 'enq', 'err', 'attempt')
  if not failed(f) and f[1] then
    n = n + 1
    local token = ARGV[3 + n]
    local attempt = (tonumber(f[5]) or 0) + 1
    redis.call('HSET', key, 'st', 'l', 'tok', token, 'attempt', text(attempt), 'dl', deadline)
    deadlines[2 * n - 1] = deadline
    deadlines[2 * n] = id
    local at = 6 * (n - 1)
    leased[at + 1] = id
    leased[at + 2] = f[1]
    leased[at + 3] = f[2]
    leased[at + 4] = attempt
    leased[at + 5] = f[3]
    leased[at + 6] = f[4] or ''
  end
end
call_chunked('ZADD', KEYS[3], deadlines)
return leased
",
    )
});

/// The opening of nack, defer and dead-letter: refuse unless the lease is
/// [held](PRELUDE), then take the job out of `leased`. KEYS[1] job,
/// KEYS[2] leased; ARGV[1] id, ARGV[2] token.
const HELD: &str = r"
if not held(KEYS[1], KEYS[2], ARGV[1], ARGV[2]) then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
";

fn fenced(body: &str) -> Script {
    script(&format!("{HELD}\n{body}"))
}

/// Nack. KEYS: job, leased, scheduled. ARGV: id, token, delay ms, error.
pub(crate) static NACK: LazyLock<Script> = LazyLock::new(|| {
    fenced(
        r"
redis.call('HSET', KEYS[1], 'st', 's', 'tok', '', 'err', ARGV[4])
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), ARGV[1])
return 1
",
    )
});

/// Defer without counting the attempt. KEYS: job, leased, scheduled. ARGV: id, token, delay ms.
pub(crate) static DEFER: LazyLock<Script> = LazyLock::new(|| {
    fenced(
        r"
redis.call('HSET', KEYS[1], 'st', 's', 'tok', '')
redis.call('HINCRBY', KEYS[1], 'attempt', -1)
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), ARGV[1])
return 1
",
    )
});

/// Dead-letter. KEYS: job, leased, letters index, letter, pending counter.
/// ARGV: id, token, reason.
pub(crate) static DEAD_LETTER: LazyLock<Script> = LazyLock::new(|| {
    fenced(
        r"
redis.call('HSET', KEYS[1], 'st', 'd', 'tok', '', 'err', ARGV[3])
local f = redis.call('HMGET', KEYS[1], 'payload', 'meta', 'enq', 'attempt')
redis.call('DEL', KEYS[4])
redis.call('HSET', KEYS[4], 'payload', f[1], 'meta', f[2], 'enq', f[3], 'attempts', f[4],
  'reason', ARGV[3], 'at', now, 'state', 'pending')
redis.call('ZADD', KEYS[3], now, ARGV[1])
redis.call('INCR', KEYS[5])
return 1
",
    )
});

/// Replay. KEYS: letter, job, ready, pending counter. ARGV: id.
/// Returns 1 requeued, 0 already replayed, -1 unknown.
pub(crate) static REPLAY: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return -1 end
if state == 'replayed' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'replayed')
redis.call('DECR', KEYS[4])
local f = redis.call('HMGET', KEYS[1], 'payload', 'meta', 'enq', 'reason')
-- Whatever the job key held is replaced whole, its expiry with it.
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'payload', f[1], 'meta', f[2], 'enq', f[3], 'err', f[4],
  'attempt', 0, 'st', 'r', 'tok', '')
redis.call('RPUSH', KEYS[3], ARGV[1])
return 1
",
    )
});

/// Discard. KEYS: letter, job, letters index, pending counter. ARGV: id.
/// Returns 1 if a letter was deleted.
pub(crate) static DISCARD: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if state == 'pending' then
  redis.call('DECR', KEYS[4])
  redis.call('DEL', KEYS[2])
end
return 1
",
    )
});

/// Enqueue many jobs, each unless its id is known. KEYS: ready, scheduled,
/// then one job key per job. ARGV: id, payload, metadata json, delay ms per
/// job. Returns 1 (new) or 0 (duplicate) per job, in order; a second job with
/// the same id in one batch is a duplicate of the first.
pub(crate) static ENQUEUE_BATCH: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local results = {}
local ready = {}
for i = 1, #KEYS - 2 do
  local key = KEYS[2 + i]
  local base = (i - 1) * 4
  if redis.call('EXISTS', key) == 1 then
    results[i] = 0
  else
    local delay = tonumber(ARGV[base + 4])
    local status = 'r'
    if delay > 0 then status = 's' end
    redis.call('HSET', key, 'payload', ARGV[base + 2], 'meta', ARGV[base + 3], 'attempt', '0', 'enq', now_text, 'st', status)
    if delay > 0 then
      redis.call('ZADD', KEYS[2], now + delay, ARGV[base + 1])
    else
      ready[#ready + 1] = ARGV[base + 1]
    end
    results[i] = 1
  end
end
-- In batch order: the ready list is FIFO.
call_chunked('RPUSH', KEYS[1], ready)
return results
",
    )
});

/// Ack many leases, each fenced by `held` (see [`PRELUDE`]). KEYS: leased, then one job key
/// per lease. ARGV: retention ms, then id and token per lease. Returns 1
/// (acked) or 0 (lease lost) per lease, in order.
///
/// An acked job's hash is replaced by a string marker that expires after
/// the retention: one command instead of rewriting the hash, dropping its
/// payload and setting its expiry, and a fraction of the memory. The marker
/// is all enqueue's duplicate check needs (`EXISTS`); every script reads job
/// keys with `pcall`, so a marker is never mistaken for a pending job.
pub(crate) static ACK_BATCH: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local results = {}
local done = {}
for i = 1, #KEYS - 1 do
  local key = KEYS[1 + i]
  local id = ARGV[2 * i]
  local acked = 0
  if held(key, KEYS[1], id, ARGV[2 * i + 1]) then
    done[#done + 1] = id
    redis.call('SET', key, 'c', 'PX', ARGV[1])
    acked = 1
  end
  results[i] = acked
end
call_chunked('ZREM', KEYS[1], done)
return results
",
    )
});
