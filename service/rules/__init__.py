"""The rules engine: rule files read and checked, and the pure decision over a page view
(conditions, keywords and phrases, places, templates, GeoIP, phone numbers).
"""
