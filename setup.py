"""Which files go into the package (metadata lives in pyproject.toml).

Recipes and data mixes have one copy, in the top-level `recipes/` and `data_mixes/` where users and
the README find them; an install ships them inside the package as `domainlm.recipes` and
`domainlm.data_mixes` (package_dir maps those names to the top-level folders; an editable install
maps them the same way). pyproject.toml alone cannot add packages to a `find` result, hence this file.
`domainlm.assets.shipped_recipes_dir()` / `shipped_mixes_dir()` find them in either layout.
"""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["domainlm*"]),
        "domainlm.recipes",
        "domainlm.data_mixes",
        "domainlm.searches",
    ],
    package_dir={
        "domainlm.recipes": "recipes",
        "domainlm.data_mixes": "data_mixes",
        "domainlm.searches": "searches",
    },
    package_data={
        "domainlm": ["assets/**/*", "**/*.yaml"],  # sample data; curate default.yaml, gopher_web.yaml
        "domainlm.recipes": ["*.yaml"],
        "domainlm.data_mixes": ["*.yaml"],
        "domainlm.searches": ["*.yaml"],  # `domainlm mixsearch` searches
    },
)
