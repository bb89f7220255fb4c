"""powerflow aggregator: PERSISTED -> hourly_stats."""
