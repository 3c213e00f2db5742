"""Trends and anomalies: the batch analyzer (trend, profile, forecast,
correlations) and the online anomaly detector the trend watch and
``metrics.trends`` share.
"""
