"""What every report of the pipeline draws with: figures on their own canvas, pictures embedded in HTML."""
