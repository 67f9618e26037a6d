return release(ARGV[2], ARGV[3], ARGV[4], ARGV[5])
