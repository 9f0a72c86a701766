"""The daemon around the steps: the loop, the processing protocol, the clock jobs, the command line."""
