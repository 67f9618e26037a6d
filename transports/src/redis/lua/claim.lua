return claim_next(ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
