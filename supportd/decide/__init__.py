"""What a message asks for and what to do about it: the guard, the rules, the FAQ, the plan (nothing written)."""
