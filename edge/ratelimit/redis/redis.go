// Package redis is the ratelimit.Counter shared by every edge instance:
// a GCRA in Redis through github.com/go-redis/redis_rate (CODEX_REDIS_URL),
// so all instances see one limit.
package redis

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/go-redis/redis_rate/v10"
	goredis "github.com/redis/go-redis/v9"

	"github.com/persiv/codex/edge/ratelimit"
)

// Counter is a Redis ratelimit.Counter.
type Counter struct {
	c   goredis.UniversalClient
	lim *redis_rate.Limiter
}

// New returns a Counter on c. Calls carry the client's timeouts; wrap the
// Counter in a ratelimit.Fallback so that Redis failing never fails a
// request.
func New(c goredis.UniversalClient) *Counter {
	return &Counter{c: c, lim: redis_rate.NewLimiter(c)}
}

func limit(perMinute int64) redis_rate.Limit {
	return redis_rate.Limit{Rate: int(perMinute), Burst: int(perMinute), Period: time.Minute}
}

// Take implements ratelimit.Counter with redis_rate's AllowN. With n 0 it
// charges nothing; the limit has room when at least one unit is left.
func (c *Counter) Take(ctx context.Context, key string, perMinute, n int64) (ratelimit.State, error) {
	res, err := c.lim.AllowN(ctx, key, limit(perMinute), int(n))
	if err != nil {
		return ratelimit.State{}, fmt.Errorf("redis rate limit: %w", err)
	}
	return state(perMinute, n, int64(res.Allowed), int64(res.Remaining), res.RetryAfter, res.ResetAfter), nil
}

// state reads a GCRA answer (redis_rate's, or takeAll's, which is the
// same per key) as a ratelimit.State.
func state(perMinute, n, allowed, remaining int64, retryAfter, resetAfter time.Duration) ratelimit.State {
	interval := time.Minute / time.Duration(perMinute)
	if n == 0 && remaining < 1 {
		// Room for one unit comes when the state is one interval from
		// full-minus-one: ResetAfter less (burst - 1) intervals.
		retry := resetAfter - time.Minute + interval
		return ratelimit.State{RetryAfter: max(retry, 0), Reset: resetAfter}
	}
	if allowed == 0 && n > 0 {
		return ratelimit.State{RetryAfter: retryAfter, Reset: resetAfter}
	}
	return ratelimit.State{Allowed: true, Remaining: remaining, Reset: resetAfter}
}

// takeAll is redis_rate's GCRA (its allowN script, on its keys, so Take,
// TakeAll and Charge share their state) run for several keys in one
// script: in order, stopping after the first without room, as
// ratelimit.Batcher asks. Per key it answers what allowN answers:
// allowed, remaining, retry after and reset after (seconds, as strings).
// The keys of one request share their org's hash tag, so one slot in a
// Redis Cluster.
var takeAll = goredis.NewScript(`
redis.replicate_commands()
local jan_1_2017 = 1483228800
local now = redis.call("TIME")
now = (now[1] - jan_1_2017) + (now[2] / 1000000)
local out = {}
for i, key in ipairs(KEYS) do
  local burst = tonumber(ARGV[i * 3 - 2])
  local rate = burst
  local cost = tonumber(ARGV[i * 3 - 1])
  local period = tonumber(ARGV[i * 3])
  local emission_interval = period / rate
  local increment = emission_interval * cost
  local burst_offset = emission_interval * burst
  local tat = redis.call("GET", key)
  if not tat then
    tat = now
  else
    tat = tonumber(tat)
  end
  tat = math.max(tat, now)
  local new_tat = tat + increment
  local allow_at = new_tat - burst_offset
  local diff = now - allow_at
  local remaining = diff / emission_interval
  if remaining < 0 then
    table.insert(out, 0)
    table.insert(out, 0)
    table.insert(out, tostring(diff * -1))
    table.insert(out, tostring(tat - now))
    return out
  end
  local reset_after = new_tat - now
  if reset_after > 0 then
    redis.call("SET", key, new_tat, "EX", math.ceil(reset_after))
  end
  table.insert(out, cost)
  table.insert(out, remaining)
  table.insert(out, "-1")
  table.insert(out, tostring(reset_after))
  if cost == 0 and remaining < 1 then
    return out
  end
end
return out
`)

// TakeAll implements ratelimit.Batcher in one round trip.
func (c *Counter) TakeAll(ctx context.Context, takes []ratelimit.Take, states []ratelimit.State) (int, error) {
	var (
		keysArr [4]string
		argsArr [12]any
	)
	keys, args := keysArr[:0], argsArr[:0]
	for _, t := range takes {
		keys = append(keys, redisPrefix+t.Key)
		args = append(args, t.PerMinute, t.N, time.Minute.Seconds())
	}
	v, err := takeAll.Run(ctx, c.c, keys, args...).Slice()
	if err != nil {
		return 0, fmt.Errorf("redis rate limit: %w", err)
	}
	if len(v)%4 != 0 || len(v)/4 > len(takes) {
		return 0, fmt.Errorf("redis rate limit: %d values for %d limits", len(v), len(takes))
	}
	n := len(v) / 4
	for i := range n {
		allowed, ok1 := v[i*4].(int64)
		remaining, ok2 := v[i*4+1].(int64)
		retry, err1 := seconds(v[i*4+2])
		reset, err2 := seconds(v[i*4+3])
		if !ok1 || !ok2 || err1 != nil || err2 != nil {
			return 0, fmt.Errorf("redis rate limit: malformed answer %v", v[i*4:i*4+4])
		}
		states[i] = state(takes[i].PerMinute, takes[i].N, allowed, remaining, retry, reset)
	}
	return n, nil
}

// seconds reads a script's duration in seconds, as redis_rate does.
func seconds(v any) (time.Duration, error) {
	s, ok := v.(string)
	if !ok {
		return 0, fmt.Errorf("not a string: %v", v)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, err
	}
	if f == -1 {
		return -1, nil
	}
	return time.Duration(f * float64(time.Second)), nil
}

// charge advances the state redis_rate keeps for a key (the theoretical
// arrival time, in seconds since 2017-01-01 by Redis's clock, under the
// key "rate:" + key) by cost emission intervals, whatever the room:
// redis_rate has no call that charges past the limit, and tpm must charge
// what an answer used. TestChargeSharesRedisRateState pins the format.
var charge = goredis.NewScript(`
redis.replicate_commands()
local key = KEYS[1]
local rate = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local jan_1_2017 = 1483228800
local now = redis.call("TIME")
now = (now[1] - jan_1_2017) + (now[2] / 1000000)
local tat = redis.call("GET", key)
if not tat then
  tat = now
else
  tat = math.max(tonumber(tat), now)
end
local new_tat = tat + period / rate * cost
-- A charge below the clock's resolution (a huge limit) changes nothing.
if new_tat > now then
  redis.call("SET", key, new_tat, "EX", math.max(1, math.ceil(new_tat - now)))
end
return tostring(new_tat - now)
`)

// redisPrefix is redis_rate's key prefix.
const redisPrefix = "rate:"

// Charge implements ratelimit.Counter.
func (c *Counter) Charge(ctx context.Context, key string, perMinute, n int64) error {
	if n <= 0 {
		return nil
	}
	err := charge.Run(ctx, c.c, []string{redisPrefix + key}, perMinute, time.Minute.Seconds(), n).Err()
	if err != nil {
		return fmt.Errorf("redis rate limit charge: %w", err)
	}
	return nil
}
