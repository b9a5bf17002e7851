//! Fetching revisions of Git repositories with libgit2 (the source issue fills this in).
