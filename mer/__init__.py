"""mer: continual pre-training with Meta-Experience Replay."""

__version__ = "0.1.0"
