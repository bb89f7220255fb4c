"""powerflow alerts worker."""
