"""The plug: one service's link to the hub (reports, orders, file transfers)."""
