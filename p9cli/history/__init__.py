"""p9cli.history: fetch planner, async executor, rate limiting, Parquet store."""
