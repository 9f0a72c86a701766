"""What a plan changes: tickets, held actions and their confirmations, the owner's commands."""
