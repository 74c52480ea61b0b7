"""The payflow benchmark (issue 8), start to finish: `bash bench/run.sh` runs this.

It creates a throw-away PostgreSQL database and Redis key prefix, seeds them, measures the asyncpg
floor, starts `payflow serve --workers 2` and drives it with wrk, repeats the purchase and product
scenarios with one worker and on the embedded default (SQLite, one worker, in-process cache), counts
round trips per request, then tears everything down and writes bench/results/<date>-<commit>.{json,md}
and the summary table in bench/README.md. See bench/README.md.

This file is only the entry point (`python bench/run.py --help`). The code is in:
- orchestrate.py: the command line and its modes, the database, seeding, servers, the order of the run;
- scenarios.py: the wrk scenarios (ids, scripts, clients, durations) and running one;
- report.py: the results JSON and Markdown, the README's summary, the console lines.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from orchestrate import main

if __name__ == "__main__":
    main()
