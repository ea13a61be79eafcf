"""The HTTP front: the routes every page view calls, the ASGI layers and connection bounds, and
what answers clients (JSON, errors, CORS, tokens for reports).
"""
