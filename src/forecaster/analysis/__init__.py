"""Snapshots, models and simulations -> the answers (the fourth step of the flow): forecast, scenarios
(parsing, levers as table transforms, compare), plan, funnel, backtest and its baselines, scores, and
the summaries of raw trials. Nothing here imports report or cli."""
