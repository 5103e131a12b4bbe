"""Detection from probability maps: peaks, matching, scoring."""
