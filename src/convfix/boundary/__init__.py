"""The runtime boundary: worker processes for everything that can crash or hang on a model, typed
messages between them and convfix, and the limits each request runs under (see process.py)."""
