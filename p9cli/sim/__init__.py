"""p9cli.sim: the offline exchange simulator. Never imports exchanges/, history/ or live/."""
