local out = {}
append_row(out, ARGV[2], SUMMARY_FIELDS)
return out
