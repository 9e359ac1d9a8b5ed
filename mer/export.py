"""`python -m mer.export`: Write a run's model as a Hugging Face folder (the work is done in `mer.hf.export`)."""

import sys

from mer.hf.export import main

if __name__ == "__main__":
    sys.exit(main())
