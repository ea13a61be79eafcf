"""Reports for analysts: the experiments' statistics, the logs of calls and conversions, and the
dashboard with its charts.
"""
