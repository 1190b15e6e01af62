"""PDF inspection before any parser runs: syntax scan, filter limits, bomb checks."""
