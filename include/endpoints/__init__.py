"""Endpoints on either backend: their lifecycle (:mod:`.lifecycle`), local server processes (:mod:`.local`,
:mod:`.processes`), SageMaker endpoints (:mod:`.sagemaker`) and reaching them (:mod:`.invocation`); the standing
production endpoint (:mod:`.production`, :mod:`.production_local`, :mod:`.production_sagemaker`) and data capture
(:mod:`.capture`).

What an endpoint serves and answers (the HTTP server, the container contract, InvokeEndpoint, the router) is
:mod:`include.serving`.
"""
