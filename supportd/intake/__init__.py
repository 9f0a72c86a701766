"""Mail in: IMAP, raw bytes to one ``Inbound`` value, the customer's own words, who wrote it."""
