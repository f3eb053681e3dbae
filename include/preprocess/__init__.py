"""Data preparation: ingest, canonical annotation table, quality gate, .lst and RecordIO."""
