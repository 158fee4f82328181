"""p9cli.analysis: pure market-structure functions over arrays/DataFrames (no I/O)."""
