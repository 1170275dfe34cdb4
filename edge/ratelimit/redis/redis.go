// Package redis is the ratelimit.Counter shared by every edge instance:
// a GCRA in Redis through github.com/go-redis/redis_rate (CODEX_REDIS_URL),
// so all instances see one limit.
package redis

import (
	"context"
	"fmt"
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
	interval := time.Minute / time.Duration(perMinute)
	if n == 0 && res.Remaining < 1 {
		// Room for one unit comes when the state is one interval from
		// full-minus-one: ResetAfter less (burst - 1) intervals.
		retry := res.ResetAfter - time.Minute + interval
		return ratelimit.State{RetryAfter: max(retry, 0), Reset: res.ResetAfter}, nil
	}
	if res.Allowed == 0 && n > 0 {
		return ratelimit.State{RetryAfter: res.RetryAfter, Reset: res.ResetAfter}, nil
	}
	return ratelimit.State{Allowed: true, Remaining: int64(res.Remaining), Reset: res.ResetAfter}, nil
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
