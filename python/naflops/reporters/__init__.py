"""Reporters: one module per output (table, csv, markdown, html); what they share is
naflops.figures."""
from naflops.reporters.csv import csv_text
from naflops.reporters.markdown import markdown
from naflops.reporters.table import table


def render(doc, fmt, units):
    return {"table": lambda: table(doc, units), "csv": lambda: csv_text(doc),
            "md": lambda: markdown(doc, units)}[fmt]()
