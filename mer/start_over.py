"""`python -m mer.start_over`: Make a run directory start again from step 0, losing no record (the work is done in `mer.rundir.start_over`)."""

import sys

from mer.rundir.start_over import main

if __name__ == "__main__":
    sys.exit(main())
