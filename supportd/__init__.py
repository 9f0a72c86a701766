"""supportd: the support daemon a one-person shop can trust with its customers."""

__version__ = "0.1.0"
