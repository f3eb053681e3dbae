"""Batch transform: SageMaker's CreateTransformJob for the built-in object detector, on both backends.

The request (:func:`include.sagemaker.requests.transform_request`) goes through
:func:`include.execution.execute` like every other: on the sagemaker backend through the provider's
``SageMakerTransformOperator`` (or boto3), locally to :mod:`.local_job`, which scores the images with
the endpoint's own code. Both leave the same output (names in :mod:`include.run_layout`):

- ``<output>/<path under the input>.out``: the endpoint's JSON answer for that image;
- ``<output>/<path under the input>.error.json``: ``{"input", "error", "type"}`` for an input that could
  not be scored (not an image, over the payload limit); one bad file never stops the job;
- ``<output>/transform.json``: a DescribeTransformJob-shaped record with ``Counts``.

:mod:`.outputs` reads that layout back (pre-labels, monitoring); :mod:`.prelabels` turns it into the
labelling tools' pre-annotations.
"""
