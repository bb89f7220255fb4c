"""powerflow."""
