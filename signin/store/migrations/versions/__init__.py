"""The revisions, oldest first: ``0001`` the baseline, each later one a change on top of the one before."""
