"""Presentation pieces shared by every report section: long-form tables and their Markdown/CSV
forms, figure styling, bootstrap intervals, layer-grid panels, model families and the paper's
numbers. Layer 0: no database, no kind, no torch; sections and the report builder import it.
"""
