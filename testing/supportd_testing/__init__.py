"""Test support, outside the daemon package: real mail servers on loopback and the demo.

Not in the supportd wheel; ``scripts/setup.sh`` (the demo and test setup) puts ``testing/`` on the
virtual environment's path."""
