"""supportd's memory on disk: the ledger, its one writer, recovery, health."""
