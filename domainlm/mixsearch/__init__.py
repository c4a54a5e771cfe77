"""Mixture search: sources + target + constraint -> proxies trained per mixture -> a data-mixing law per
domain -> the best mixture under the constraint, trained once to check the prediction.

Python API: `domainlm.mixsearch.search.search("searches/finance.yaml", out=Path("mixsearch/finance"))`.
"""
