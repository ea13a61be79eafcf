"""CSV for spreadsheets: what every CSV download of the service writes its text cells through."""

from __future__ import annotations


def spreadsheet_text(text: str) -> str:
    """Text as a spreadsheet shows it, never as a formula it runs (OWASP's CSV injection advice:
    a cell that starts with = + - @ tab or carriage return gets a leading apostrophe)."""
    return "'" + text if text.startswith(("=", "+", "-", "@", "\t", "\r")) else text
