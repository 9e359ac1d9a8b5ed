"""`python -m mer.downstream`: Score a run's exported models with lm-evaluation-harness (the work is done in `mer.evaluation.downstream`)."""

import sys

from mer.evaluation.downstream import main

if __name__ == "__main__":
    sys.exit(main())
