"""p9cli.history: fetch planner, series fetching, Parquet store (REST client and limits: p9cli.rest)."""
