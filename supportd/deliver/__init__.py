"""Mail out: templates rendered, replies queued in the ledger, sent over SMTP once."""
