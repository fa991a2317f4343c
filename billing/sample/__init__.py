"""The bundled sample organization: a fictional operator of 43 community hubs.

`python -m billing.sample.generate sample` rewrites the repository's
`sample/` folder (configuration, FOCUS cost files, usage data) from fixed
seeds, so the sample can be regenerated and reviewed like code.
"""
