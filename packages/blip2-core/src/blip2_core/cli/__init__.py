"""The command-line tools: ``blip2-predict``, ``blip2-merge``, their shared start-up and result files
(``blip2-serve``'s command line lives with the service, in ``serve``)."""
