"""Background jobs that keep the database tidy behind live traffic (run by the sweeper)."""
