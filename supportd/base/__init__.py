"""What every step shares: the config and its declared settings, YAML with line numbers, problems, the clock."""
