"""What the owner reads and writes: alerts, the weekly digest, the file ``supportd init`` writes."""
