"""Sphinx's settings for the pages under docs/: Markdown read by MyST, built by `make docs`.

`make docs` builds with `-W --keep-going -n`: any warning fails the build, so a
link to a page or heading that does not exist stops it.
"""

project = "signin"
author = "the signin maintainers"
extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
# Headings down to ### get GitHub-style anchors, so [x](deploying.md#gunicorn) is checked.
myst_heading_anchors = 3
html_theme = "furo"
html_title = "signin"
html_static_path: list[str] = []
# Pygments' nginx lexer stumbles on the JSON inside the nginx snippet's `return 503 '...'` and
# shows the block uncoloured; that is no fault of the page.
suppress_warnings = ["misc.highlighting_failure"]
