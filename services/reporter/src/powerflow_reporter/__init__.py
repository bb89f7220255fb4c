"""powerflow reporter: ESG reports whose every number comes from the database."""
