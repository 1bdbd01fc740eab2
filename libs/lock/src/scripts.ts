/**
 * The lock's Lua scripts. Each runs atomically in Redis; the header of each documents KEYS/ARGV.
 * Lock value format: `<fence>:<nonce>`; the fence is a per-name counter that only grows, so a
 * later holder always has a larger fence than an earlier one (fencing tokens, as in Kleppmann's
 * "How to do distributed locking").
 */

/**
 * ACQUIRE
 * KEYS[1] lock key            KEYS[2] fence counter key     KEYS[3] waiters set key
 * ARGV[1] nonce               ARGV[2] ttl in ms             ARGV[3] waiter id ('' = do not wait)
 * ARGV[4] ttl in ms of the fence counter and of the waiters set
 * Returns {1, token, ttl} when acquired; {0, holder token, remaining ttl} when held by another
 * (and the waiter id, if given, is added to the waiters set in the same atomic step, so a release
 * that happens right after cannot miss it).
 */
export const ACQUIRE = `
local holder = redis.call('GET', KEYS[1])
if holder then
  if ARGV[3] ~= '' then
    redis.call('SADD', KEYS[3], ARGV[3])
    redis.call('PEXPIRE', KEYS[3], ARGV[4])
  end
  return {0, holder, redis.call('PTTL', KEYS[1])}
end
local fence = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
local token = fence .. ':' .. ARGV[1]
redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
return {1, token, tonumber(ARGV[2])}
`;

/**
 * RENEW
 * KEYS[1] lock key            ARGV[1] token     ARGV[2] ttl in ms
 * Returns 1 when the token still holds the lock (its expiry is reset to ttl), 0 otherwise.
 */
export const RENEW = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`;

/**
 * RELEASE (compare-and-delete)
 * KEYS[1] lock key            KEYS[2] waiters set key        ARGV[1] token
 * Returns {released (1|0), waiter ids...}. Waiters are handed over (and removed) when this token
 * held the lock, or when nobody holds it any more (it expired); when a newer holder has it, the
 * waiters stay for that holder to wake.
 */
export const RELEASE = `
local holder = redis.call('GET', KEYS[1])
local released = 0
if holder == ARGV[1] then
  redis.call('DEL', KEYS[1])
  released = 1
elseif holder then
  return {0}
end
local waiters = redis.call('SMEMBERS', KEYS[2])
redis.call('DEL', KEYS[2])
local out = {released}
for i = 1, #waiters do out[#out + 1] = waiters[i] end
return out
`;

/**
 * WAIT_IF_HELD (a gate: pass while nobody holds the lock, wait while somebody does)
 * KEYS[1] lock key            KEYS[2] waiters set key
 * ARGV[1] waiter id           ARGV[2] ttl in ms of the waiters set
 * Returns {0} when the lock is free (nothing is taken); {1, holder token, remaining ttl} when it
 * is held, the waiter id added to the waiters set in the same atomic step (as ACQUIRE does).
 */
export const WAIT_IF_HELD = `
local holder = redis.call('GET', KEYS[1])
if not holder then
  return {0}
end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return {1, holder, redis.call('PTTL', KEYS[1])}
`;
