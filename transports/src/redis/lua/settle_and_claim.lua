local now, queue, owner, lease_until, seed, max = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6],
    ARGV[7]
deferred_wakes = {}
local applied = settle(8, now)
flush_wakes()
-- The claim never fails the call: after an error, the tasks leased before it are returned.
local claimed = {}
if max ~= '0' then pcall(claim_many, claimed, queue, owner, lease_until, now, seed, max) end
return {applied, claimed}
