return counts(ARGV[2], ARGV[3])
