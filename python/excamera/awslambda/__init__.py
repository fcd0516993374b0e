"""Running workers on AWS Lambda: the deployment package, its handler, deploy and invoke.

``excamera lambda build`` (``build.py``) makes one zip: the excamera package with its Rust
extension, the worker's Python dependencies and a static ``bin/vpxenc``; each invocation runs
one worker (``handler.py``) whose event is the launch payload; ``excamera lambda deploy``
(``deploy.py``) creates the function from it.
"""
