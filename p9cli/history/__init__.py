"""p9cli.history: fetch planner, series fetching, report, lock and rate-limit hand-over of
``p9 fetch-history`` (the store: p9cli.store; REST client and limits: p9cli.rest; the command's
service: p9cli.services.fetch_history)."""
