"""``blip2-serve``: BLIP-2 behind an HTTP API and a web page (``pip install 'blip2-core[serve]'``).

The model side (``blip2_core.inference.predictor.Predictor``) knows nothing of this package; here are the request
queue that batches concurrent requests (``batch_queue``), the request schemas (``schemas``), the capped reading of
request bodies (``request_body``), a request's image to pixels (``request_image``) under a budget of pixels being
decoded (``pixel_budget``), the fetcher of ``image_url`` that cannot be aimed inside (``url_fetch``), what the
server shows of its paths (``public_names``), the FastAPI app (``app``), the page and the API docs' files
(``page/``) and the command (``cli``). Importing this package imports no web
framework: ``cli`` must be able to say which extra to install when FastAPI is missing.
"""
