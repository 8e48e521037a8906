"""The Lua scripts of the ``redis`` backend. Each runs atomically on the Redis server: no other
command (of any replica) runs between its steps.

``INTAKE``: KEYS = [stream, dedupe key 1 .. n]; ARGV = [group, capacity, ttl_ms, then five
fields per incident: incident_id, card, notification, enqueued_at, traceparent]. Creates the
consumer group when missing (a restarted, empty Redis). Answers -1 and writes nothing when the
waiting entries (stream length minus pending) plus n exceed capacity; otherwise, per incident,
``SET key 1 NX PX ttl`` and, only when that set the key, ``XADD``: an incident another replica
already took (an Alertmanager HA pair sends both replicas the same notification) is skipped.
Answers how many were added.

``RENEW``: KEYS = [stream]; ARGV = [group, consumer, id ...]. For each id still pending for
this consumer, ``XCLAIM ... 0 id JUSTID`` resets its idle time (the claim stays alive and is
not taken over); answers the ids no longer ours (taken over, or gone with a flushed Redis, also
when the group itself is gone: a Redis restarted empty is not an outage).

``REQUEUE``: KEYS = [stream]; ARGV = [group, consumer, id]. When the entry is still ours:
acknowledge and delete it and add its fields again at the tail, so any replica takes it at
once. Answers 1 when requeued, 0 when it was no longer ours.
"""

from __future__ import annotations

INTAKE = """
local stream = KEYS[1]
local group = ARGV[1]
local capacity = tonumber(ARGV[2])
local ttl = ARGV[3]
local n = #KEYS - 1
local width = 5
if redis.call('EXISTS', stream) == 0 then
  redis.call('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
end
local pending = 0
local ok, summary = pcall(redis.call, 'XPENDING', stream, group)
if ok then
  pending = summary[1]
else
  redis.call('XGROUP', 'CREATE', stream, group, '0')
end
if redis.call('XLEN', stream) - pending + n > capacity then
  return -1
end
local added = 0
for i = 1, n do
  if redis.call('SET', KEYS[i + 1], '1', 'NX', 'PX', ttl) then
    local base = 3 + (i - 1) * width
    redis.call('XADD', stream, '*',
      'incident_id', ARGV[base + 1], 'card', ARGV[base + 2], 'notification', ARGV[base + 3],
      'enqueued_at', ARGV[base + 4], 'traceparent', ARGV[base + 5])
    added = added + 1
  end
end
return added
"""

RENEW = """
local lost = {}
for i = 3, #ARGV do
  -- pcall: a Redis that restarted empty has no group (NOGROUP); every claim is lost then.
  local ok, entry = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if ok and #entry == 1 then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  else
    table.insert(lost, ARGV[i])
  end
end
return lost
"""

REQUEUE = """
local entry = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2])
if #entry == 0 then
  return 0
end
local found = redis.call('XRANGE', KEYS[1], ARGV[3], ARGV[3])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
if #found == 1 then
  redis.call('XADD', KEYS[1], '*', unpack(found[1][2]))
end
return 1
"""
