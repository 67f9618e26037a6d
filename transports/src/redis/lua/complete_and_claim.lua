local now = ARGV[4]
local done = complete(ARGV[2], ARGV[3], now, 9)
return {done, claim_next(ARGV[5], ARGV[6], ARGV[7], now, ARGV[8])}
