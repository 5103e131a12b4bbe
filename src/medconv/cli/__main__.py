"""`python -m medconv.cli ...`: the medconv command (tests and benchmarks run it so)."""
import sys

from . import main

sys.exit(main())
