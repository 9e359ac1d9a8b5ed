"""Training: the trainer, which alone knows the order of a step (`trainer`), and what it delegates, each in a
file named for it."""
