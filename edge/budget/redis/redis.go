// Package redis is the budget.Ledger shared by every edge instance: the
// live reservations and spend of budgets in Redis (CODEX_REDIS_URL),
// changed only by Lua scripts, so a reservation across several budgets is
// atomic and concurrent requests on any number of instances can never
// reserve past a cap.
//
// Each budget and period is a hash ("spent", "reserved", "seeded" and one
// field "h:<request id>" per reservation) and a sorted set of the
// reservations by expiry time (Redis's clock). Every script first drops
// expired reservations, so a reservation whose request never ended (its
// instance died) is returned after the TTL. The period is part of the
// key: a new period starts from nothing, with no reset job. A bucket that
// is not "seeded" (new, or lost to a Redis flush or restart) is rebuilt
// from the store's settled spend before use.
package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/persiv/codex/edge/budget"
)

// Ledger is a Redis budget.Ledger.
type Ledger struct {
	c    goredis.UniversalClient
	seed budget.Seeder
	ttl  time.Duration
}

// New returns a Ledger on c that seeds buckets with seed and lets a
// reservation expire after ttl. Wrap it in a budget.Fallback so that Redis
// failing never fails a request.
func New(c goredis.UniversalClient, seed budget.Seeder, ttl time.Duration) *Ledger {
	return &Ledger{c: c, seed: seed, ttl: ttl}
}

// keys returns a bucket's hash and sorted set. The org id in braces is a
// Redis Cluster hash tag: one request's buckets are all of one org, so a
// script may touch them all.
func keys(b budget.Bucket) (hash, holds string) {
	k := b.KeyID
	if k == "" {
		k = "-"
	}
	base := "codex:budget:{" + b.OrgID + "}:" + k + ":" + string(b.Period) + ":" + b.Start.UTC().Format("20060102")
	return base, base + ":holds"
}

// keep is how long a bucket outlives its period, so a late settlement
// still finds it and `budgets list` shows the last period a while.
const keep = 7 * 24 * time.Hour

func expiry(b budget.Bucket) int64 {
	return b.Period.End(b.Start).Add(keep).Unix()
}

// expireHolds is the prologue of every script: drop the expired
// reservations of the bucket at KEYS[2i-1], KEYS[2i].
const expireHolds = `
local function now_ms()
  local t = redis.call("TIME")
  return t[1] * 1000 + math.floor(t[2] / 1000)
end
-- Amounts travel as the decimal strings they are stored as: a Lua number
-- would print large ones in exponent form, which HINCRBY refuses.
local function unreserve(h, a)
  if a ~= "0" then
    redis.call("HINCRBY", h, "reserved", "-" .. a)
  end
end
local function expire(h, z, now)
  local old = redis.call("ZRANGEBYSCORE", z, "-inf", now)
  for _, id in ipairs(old) do
    local a = redis.call("HGET", h, "h:" .. id)
    if a then
      unreserve(h, a)
      redis.call("HDEL", h, "h:" .. id)
    end
  end
  if #old > 0 then
    redis.call("ZREMRANGEBYSCORE", z, "-inf", now)
  end
end
`

// reserve: ARGV id, amount, ttl_ms, then per bucket its cap and expiry
// (unix seconds). Returns {1} when reserved, {0, i, spent, reserved} when
// bucket i has no room, {-1, i} when bucket i needs seeding.
var reserve = goredis.NewScript(expireHolds + `
local n = #KEYS / 2
local id, amount, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
for i = 1, n do
  if redis.call("HEXISTS", KEYS[2*i-1], "seeded") == 0 then
    return {-1, i}
  end
end
for i = 1, n do
  local h, z = KEYS[2*i-1], KEYS[2*i]
  expire(h, z, now)
  local cap = tonumber(ARGV[2+2*i])
  local spent = redis.call("HGET", h, "spent") or "0"
  local reserved = redis.call("HGET", h, "reserved") or "0"
  if redis.call("HEXISTS", h, "h:" .. id) == 1 or tonumber(spent) + tonumber(reserved) + amount > cap then
    return {0, i, spent, reserved}
  end
end
for i = 1, n do
  local h, z = KEYS[2*i-1], KEYS[2*i]
  redis.call("HINCRBY", h, "reserved", ARGV[2])
  redis.call("HSET", h, "h:" .. id, ARGV[2])
  redis.call("ZADD", z, now + ttl, id)
  local at = tonumber(ARGV[3+2*i])
  redis.call("EXPIREAT", h, at)
  redis.call("EXPIREAT", z, at)
end
return {1}
`)

// finish ends reservation ARGV[1] in every bucket, adding ARGV[2] to the
// spent amount of those still seeded (one lost to a flush is rebuilt from
// the store, which gets the amount too).
var finish = goredis.NewScript(expireHolds + `
local n = #KEYS / 2
local id, actual = ARGV[1], tonumber(ARGV[2])
local now = now_ms()
for i = 1, n do
  local h, z = KEYS[2*i-1], KEYS[2*i]
  expire(h, z, now)
  local a = redis.call("HGET", h, "h:" .. id)
  if a then
    unreserve(h, a)
    redis.call("HDEL", h, "h:" .. id)
    redis.call("ZREM", z, id)
  end
  if actual > 0 and redis.call("HEXISTS", h, "seeded") == 1 then
    redis.call("HINCRBY", h, "spent", ARGV[2])
  end
end
return 1
`)

// seed starts a bucket from the store's spend ARGV[1] unless another
// instance did first; ARGV[2] is its expiry.
var seed = goredis.NewScript(`
if redis.call("HSETNX", KEYS[1], "seeded", 1) == 1 then
  redis.call("HSET", KEYS[1], "spent", ARGV[1])
  redis.call("HSETNX", KEYS[1], "reserved", 0)
  redis.call("EXPIREAT", KEYS[1], tonumber(ARGV[2]))
end
return 1
`)

// use reads a bucket, dropping expired reservations first: {seeded,
// spent, reserved}.
var use = goredis.NewScript(expireHolds + `
expire(KEYS[1], KEYS[2], now_ms())
local v = redis.call("HMGET", KEYS[1], "seeded", "spent", "reserved")
return {v[1] and 1 or 0, v[2] or "0", v[3] or "0"}
`)

func bucketArgs(bs []budget.Bucket) (ks []string, capArgs []any) {
	for _, b := range bs {
		h, z := keys(b)
		ks = append(ks, h, z)
		capArgs = append(capArgs, b.Cap, expiry(b))
	}
	return ks, capArgs
}

// Reserve implements budget.Ledger.
func (l *Ledger) Reserve(ctx context.Context, id string, bs []budget.Bucket, amount int64) (budget.Hold, *budget.Refusal, error) {
	ks, caps := bucketArgs(bs)
	args := append([]any{id, amount, l.ttl.Milliseconds()}, caps...)
	for attempt := 0; attempt < 3; attempt++ {
		v, err := ints(reserve.Run(ctx, l.c, ks, args...).Slice())
		if err != nil {
			return nil, nil, fmt.Errorf("redis budget reserve: %w", err)
		}
		switch v[0] {
		case 1:
			return &hold{l: l, id: id, keys: ks}, nil, nil
		case 0:
			return nil, &budget.Refusal{Index: int(v[1]) - 1, SpentNanoUSD: v[2], ReservedNanoUSD: v[3]}, nil
		}
		if err := l.seedBucket(ctx, bs[v[1]-1]); err != nil {
			return nil, nil, err
		}
	}
	return nil, nil, errors.New("redis budget reserve: buckets keep losing their seed")
}

func (l *Ledger) seedBucket(ctx context.Context, b budget.Bucket) error {
	spent, err := l.seed(ctx, b)
	if err != nil {
		return fmt.Errorf("seed budget from the store: %w", err)
	}
	h, _ := keys(b)
	if err := seed.Run(ctx, l.c, []string{h}, spent, expiry(b)).Err(); err != nil {
		return fmt.Errorf("redis budget seed: %w", err)
	}
	return nil
}

type hold struct {
	l    *Ledger
	id   string
	keys []string
}

func (h *hold) Settle(ctx context.Context, actual int64) error {
	if err := finish.Run(ctx, h.l.c, h.keys, h.id, max(actual, 0)).Err(); err != nil {
		return fmt.Errorf("redis budget settle: %w", err)
	}
	return nil
}

func (h *hold) Release(ctx context.Context) error {
	if err := finish.Run(ctx, h.l.c, h.keys, h.id, 0).Err(); err != nil {
		return fmt.Errorf("redis budget release: %w", err)
	}
	return nil
}

// Use implements budget.Ledger. A bucket not seeded yet shows the
// store's spend and nothing reserved.
func (l *Ledger) Use(ctx context.Context, b budget.Bucket) (int64, int64, error) {
	h, z := keys(b)
	v, err := ints(use.Run(ctx, l.c, []string{h, z}).Slice())
	if err != nil {
		return 0, 0, fmt.Errorf("redis budget use: %w", err)
	}
	if v[0] == 0 {
		spent, err := l.seed(ctx, b)
		return spent, 0, err
	}
	return v[1], v[2], nil
}

// Forget deletes a bucket (for tests).
func (l *Ledger) Forget(ctx context.Context, b budget.Bucket) error {
	h, z := keys(b)
	return l.c.Del(ctx, h, z).Err()
}

// ints reads a script's answer of integers and decimal strings exactly
// (a Lua number would round amounts past 2^53).
func ints(vs []any, err error) ([]int64, error) {
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(vs))
	for i, v := range vs {
		switch v := v.(type) {
		case int64:
			out[i] = v
		case string:
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("script answer %d: %w", i, err)
			}
			out[i] = n
		default:
			return nil, fmt.Errorf("script answer %d: unexpected %T", i, v)
		}
	}
	return out, nil
}
