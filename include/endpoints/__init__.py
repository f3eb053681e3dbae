"""Endpoints on either backend: their lifecycle (:mod:`.lifecycle`), local server processes (:mod:`.local`,
:mod:`.processes`), SageMaker endpoints (:mod:`.sagemaker`) and reaching them (:mod:`.invocation`).

What an endpoint serves and answers (the HTTP server, the container contract) is :mod:`include.serving`.
"""
