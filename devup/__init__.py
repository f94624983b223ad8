"""devup: one isolated, running dev environment per branch, removed without leftovers."""

__version__ = "0.1.0"
