"""Integrations: calls from telephony systems in, conversions out to CRMs' webhooks and to the ad
platforms.
"""
