return complete(ARGV[2], ARGV[3], ARGV[4], '', 5, #ARGV)
